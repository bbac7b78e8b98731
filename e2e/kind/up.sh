#!/usr/bin/env bash
# The e2e cluster on kind (needs Docker and kind): the same three zones as e2e/cluster, the
# same images (e2e/images.sh --no-import writes them as docker-archive tarballs), loaded
# into every node, since nothing is pulled from a registry. Not run in this project's CI,
# which has no Docker engine and builds the cluster from source instead (e2e/cluster).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

usage() {
	cat <<USAGE
usage: e2e/kind/up.sh [--images]

Creates kind cluster "firedrill" from e2e/kind/cluster.yaml with the node image of the
Kubernetes version pinned in e2e/cluster/versions.env, then prints the KUBECONFIG to use.
--images  also builds firedrill's and talk's images (e2e/images.sh --no-import) and loads
          them into every node with 'kind load image-archive'.
Then: e2e/deploy.sh up, and cargo test -p firedrill-e2e. Take it down with
'kind delete cluster --name firedrill'.
USAGE
}
images=0
case ${1:-} in
-h | --help) usage; exit 0 ;;
--images) images=1 ;;
"") ;;
*) usage >&2; exit 2 ;;
esac
for tool in docker kind kubectl; do
	command -v "$tool" >/dev/null || { echo "kind/up.sh: $tool is not installed" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "kind/up.sh: no Docker engine answers" >&2; exit 1; }

# shellcheck source=../cluster/versions.env
. "$repo/e2e/cluster/versions.env"
node_image=kindest/node:${K8S_VERSION}
if kind get clusters 2>/dev/null | grep -qx firedrill; then
	echo "kind cluster firedrill exists; leaving it"
else
	kind create cluster --config "$here/cluster.yaml" --image "$node_image" --wait 120s
fi
# CoreDNS a replica per zone, as in e2e/cluster (manifests/coredns.yaml): every zone
# blackout then takes a DNS replica with it, which the probes must ride out.
kubectl --context kind-firedrill -n kube-system patch deployment coredns --type=strategic -p '{
  "spec": {"replicas": 3, "template": {"spec": {"topologySpreadConstraints": [{
    "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
    "whenUnsatisfiable": "DoNotSchedule",
    "labelSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]}}}}' >/dev/null
kubectl --context kind-firedrill -n kube-system rollout status deployment/coredns --timeout=120s
if [[ $images == 1 ]]; then
	"$repo/e2e/images.sh" --no-import
	for archive in /var/lib/firedrill-cluster/images/docker.io_firedrill_*.tar; do
		kind load image-archive --name firedrill "$archive"
	done
fi
echo "export KUBECONFIG=\$(mktemp) && kind get kubeconfig --name firedrill > \$KUBECONFIG"
