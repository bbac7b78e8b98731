#!/usr/bin/env bash
# Smoke test of a running e2e cluster (up.sh): a pod in every zone runs a locally built
# image; every pod reaches every other pod across nodes, a Service by its ClusterIP and
# by its DNS names, and the API server's Service name resolves.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LOG_TAG=smoke

usage() {
	cat <<EOF
usage: e2e/cluster/smoke.sh [--keep]

Builds the fd-probe image (e2e/cluster/probe) with image.sh, imports it into every node,
starts namespace fd-smoke with one pod per zone and a Service, and checks from inside every
pod: pod-to-pod HTTP to each other pod, HTTP to the Service's ClusterIP, DNS of the
Service (full and short name) and of kubernetes.default, and HTTP by Service name.
Ends with 'N passed, N failed'; exit 1 if any failed. --keep leaves fd-smoke running.
EOF
}
KEEP=0
case ${1:-} in
-h | --help) usage; exit 0 ;;
--keep) KEEP=1 ;;
"") ;;
*) usage >&2; exit 2 ;;
esac
kc get --raw /readyz >/dev/null 2>&1 || die "no cluster answers at $KUBECONFIG_ADMIN (run up.sh)"

probe=$(probe_bin)
[[ -x $probe ]] || "$CLUSTER_DIR/build.sh" fd-probe
hash=$(basename "$(dirname "$(dirname "$probe")")")
IMAGE=firedrill.dev/e2e/fd-probe:${hash#fd-probe-}
"$CLUSTER_DIR/image.sh" "$IMAGE" "$probe"

NS=fd-smoke
kc create namespace "$NS" --dry-run=client -o yaml | kc apply -f - >/dev/null
{
	for z in $ZONES; do
		cat <<EOF
---
apiVersion: v1
kind: Pod
metadata:
  name: probe-$z
  namespace: $NS
  labels: {app: fd-smoke}
spec:
  nodeSelector: {topology.kubernetes.io/zone: $z}
  terminationGracePeriodSeconds: 1
  containers:
    - name: probe
      image: $IMAGE
      imagePullPolicy: Never
      args: [serve]
      env:
        - {name: ZONE, value: $z}
        - name: NODE_NAME
          valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
        - name: POD_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
      ports: [{containerPort: 8080}]
      readinessProbe:
        httpGet: {path: /healthz, port: 8080}
        periodSeconds: 1
EOF
	done
	cat <<EOF
---
apiVersion: v1
kind: Service
metadata:
  name: fd-smoke
  namespace: $NS
spec:
  selector: {app: fd-smoke}
  ports: [{port: 80, targetPort: 8080}]
EOF
} | kc apply -f - >/dev/null
log "waiting for one pod per zone"
if ! kc -n "$NS" wait --for=condition=Ready pod -l app=fd-smoke --timeout=120s >/dev/null; then
	# Say why (an eviction for disk, an image not imported) rather than only that it timed out.
	kc -n "$NS" get pods -o custom-columns='POD:.metadata.name,NODE:.spec.nodeName,PHASE:.status.phase,REASON:.status.reason,MESSAGE:.status.message' >&2 || true
	die "the probe pods were not Ready within 120 s"
fi

PASS=0
FAIL=0
# check DESCRIPTION EXPECTED_SUBSTRING CMD...
check() {
	local what=$1 want=$2 out
	shift 2
	if out=$("$@" 2>&1) && [[ $out == *"$want"* ]]; then
		PASS=$((PASS + 1))
		log "ok   $what: ${out%%$'\n'*}"
	else
		FAIL=$((FAIL + 1))
		log "FAIL $what: want '$want', got: ${out//$'\n'/ | }"
	fi
}
in_pod() { kc -n "$NS" exec "probe-$1" -- /fd-probe "${@:2}"; }

declare -A IP NODE
for z in $ZONES; do
	IP[$z]=$(kc -n "$NS" get pod "probe-$z" -o jsonpath='{.status.podIP}')
	NODE[$z]=$(kc -n "$NS" get pod "probe-$z" -o jsonpath='{.spec.nodeName}')
	check "probe-$z scheduled in its zone" "fd-$z" echo "${NODE[$z]}"
done
svc_ip=$(kc -n "$NS" get svc fd-smoke -o jsonpath='{.spec.clusterIP}')
fqdn=fd-smoke.$NS.svc.$CLUSTER_DOMAIN

for from in $ZONES; do
	for to in $ZONES; do
		[[ $from == "$to" ]] && continue
		check "pod $from -> pod $to (${IP[$to]})" "zone=$to" in_pod "$from" get -tries 5 "http://${IP[$to]}:8080/"
	done
	check "pod $from -> Service ClusterIP $svc_ip" "pod=probe-" in_pod "$from" get -tries 5 "http://$svc_ip/"
	check "pod $from: DNS $fqdn" "$svc_ip" in_pod "$from" dns -tries 5 "$fqdn"
	check "pod $from: DNS fd-smoke (search path)" "$svc_ip" in_pod "$from" dns -tries 5 fd-smoke
	check "pod $from: DNS kubernetes.default" "$KUBERNETES_SVC_IP" in_pod "$from" dns -tries 5 kubernetes.default
	check "pod $from -> http://fd-smoke/" "pod=probe-" in_pod "$from" get -tries 5 http://fd-smoke/
done

# Every zone's pod answers through the Service, sooner or later.
seen=""
for _ in $(seq 30); do
	seen+=$(in_pod "${ZONES%% *}" get "http://$svc_ip/" 2>/dev/null | grep -o 'zone=[a-z-]*' || true)" "
done
for z in $ZONES; do check "Service reaches the pod in $z" "zone=$z" echo "$seen"; done

((KEEP)) || kc delete namespace "$NS" --wait=false >/dev/null
echo "smoke: $PASS passed, $FAIL failed"
((FAIL == 0))
