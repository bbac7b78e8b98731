#!/usr/bin/env bash
# Deploys firedrill and talk on the cluster in KUBECONFIG (default: the e2e cluster's) with
# helm, from the images e2e/images.sh imported, and shows they work; or takes them away.
#
#   e2e/deploy.sh up [--tag TAG]   charts/firedrill -> firedrill-system (release firedrill),
#                                  charts/talk -> talk (release talk, opted in to chaos),
#                                  then: the operator's leader, one agent per node, talk
#                                  delivering (talk-load's /sli)
#   e2e/deploy.sh status           the same checks, without installing
#   e2e/deploy.sh down [--crds]    uninstall both releases, delete their namespaces and the
#                                  local volumes made for NATS (--crds: the CRDs as well,
#                                  which helm never removes; not on a shared cluster)
#   --firedrill-only               up/status/down: firedrill alone, no talk (the scale
#                                  benchmark, e2e/bench/experiments-at-scale.sh)
#   --values FILE                  up: one more values file for the firedrill release, after
#                                  ci/e2e-cluster-values.yaml (repeatable)
#
# NATS needs three volumes. Where the cluster has no default StorageClass (the e2e cluster
# has none), `up` makes the StorageClass firedrill-e2e-local (WaitForFirstConsumer) and
# $PV_PER_NODE (4) local PersistentVolumes per node under $PV_ROOT, so each NATS server's
# disk is on its node and a disk loss finds a fresh one.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export KUBECONFIG=${KUBECONFIG:-/var/lib/firedrill-cluster/kubeconfig}
HELM=${HELM:-/var/cache/firedrill/helm-v3.22.0/helm}
FD_NS=${FIREDRILL_NAMESPACE:-firedrill-system}
TALK_NS=${TALK_NAMESPACE:-talk}
PV_ROOT=${PV_ROOT:-/var/lib/firedrill-e2e/volumes}
PV_PER_NODE=${PV_PER_NODE:-4}
SC=firedrill-e2e-local
TAG=e2e
DELETE_CRDS=0
FIREDRILL_ONLY=0
EXTRA_VALUES=()

T0=$(date +%s)
log() { printf '[deploy %4ds] %s\n' "$(($(date +%s) - T0))" "$*"; }
die() {
	log "ERROR: $*" >&2
	exit 1
}

# A StorageClass and one local PV per node, unless the cluster has a default class.
volumes_up() {
	if kubectl get storageclass -o jsonpath='{range .items[*]}{.metadata.annotations.storageclass\.kubernetes\.io/is-default-class}{"\n"}{end}' | grep -qx true; then
		log "default StorageClass present; NATS uses it"
		return 1
	fi
	kubectl apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $SC
  labels: {app.kubernetes.io/part-of: firedrill-e2e}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
EOF
	# Several per node: a disk loss deletes its claim, and the Retained volume it had is
	# never bound again (no provisioner here), so the pod's new claim needs a spare.
	local node i
	for node in $(kubectl get nodes -o jsonpath='{.items[*].metadata.name}'); do
		for i in $(seq 1 "$PV_PER_NODE"); do
			# A new volume starts empty; an existing one (a second `up`) is left as it is.
			if ! kubectl get pv "firedrill-e2e-$node-$i" >/dev/null 2>&1; then
				rm -rf "${PV_ROOT:?}/$node/$i"
			fi
			mkdir -p "$PV_ROOT/$node/$i"
			kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: firedrill-e2e-$node-$i
  labels: {app.kubernetes.io/part-of: firedrill-e2e}
spec:
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: $SC
  local: {path: $PV_ROOT/$node/$i}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions:
            - {key: kubernetes.io/hostname, operator: In, values: [$node]}
EOF
		done
	done
	log "StorageClass $SC and $PV_PER_NODE local PersistentVolumes per node under $PV_ROOT"
	return 0
}

volumes_down() {
	kubectl delete pv -l app.kubernetes.io/part-of=firedrill-e2e --ignore-not-found --wait=false >/dev/null
	kubectl delete storageclass "$SC" --ignore-not-found >/dev/null
	rm -rf "$PV_ROOT"
	rmdir "$(dirname "$PV_ROOT")" 2>/dev/null || true
}

# wait_for WHAT SECONDS CMD...: runs CMD until it succeeds.
wait_for() {
	local what=$1 secs=$2 deadline
	shift 2
	deadline=$(($(date +%s) + secs))
	until "$@" >/dev/null 2>&1; do
		(($(date +%s) < deadline)) || die "timed out after ${secs}s waiting for $what"
		sleep 2
	done
	log "$what"
}

sli() {
	kubectl get --raw "/api/v1/namespaces/$TALK_NS/services/talk-load:8080/proxy/sli"
}
delivering() {
	local s
	s=$(sli) || return 1
	# Delivering: messages acknowledged, at least 99% of the window's sends, none lost.
	python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["acked"] > 0 and d["deliverySuccessRatio"] >= 0.99 and d["lostMessages"] == 0 else 1)' "$s"
}

check_firedrill() {
	local holder nodes agents
	kubectl -n "$FD_NS" rollout status deploy/firedrill-operator --timeout=180s >/dev/null
	kubectl -n "$FD_NS" rollout status ds/firedrill-agent --timeout=180s >/dev/null
	wait_for "operator leader elected" 60 \
		bash -c "[[ -n \$(kubectl -n $FD_NS get lease firedrill-operator -o jsonpath='{.spec.holderIdentity}') ]]"
	holder=$(kubectl -n "$FD_NS" get lease firedrill-operator -o jsonpath='{.spec.holderIdentity}')
	log "leader: $holder on $(kubectl -n "$FD_NS" get pod "$holder" -o jsonpath='{.spec.nodeName}')"
	kubectl -n "$FD_NS" get pods -o wide -l app.kubernetes.io/instance=firedrill
	nodes=$(kubectl get nodes -o name | wc -l)
	agents=$(kubectl -n "$FD_NS" get pods -l app.kubernetes.io/name=firedrill-agent \
		--field-selector=status.phase=Running -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u | wc -l)
	((agents == nodes)) || die "agents running on $agents of $nodes nodes"
	log "agents running on all $nodes nodes"
}

check() {
	check_firedrill
	((FIREDRILL_ONLY)) && return 0
	# The message path must be up; the ops tools are reported (Debian's Prometheus cannot
	# load charts/talk's kubernetes_sd scrape config, see e2e/images.sh).
	for r in statefulset/nats deploy/talk-server deploy/talk-load; do
		kubectl -n "$TALK_NS" rollout status "$r" --timeout=300s >/dev/null
	done
	log "talk rolled out (nats, talk-server, talk-load)"
	for r in $(kubectl -n "$TALK_NS" get deploy -o name -l app.kubernetes.io/name=prometheus) deploy/alertmanager; do
		kubectl -n "$TALK_NS" rollout status "$r" --timeout=5s >/dev/null 2>&1 || log "WARNING: $r is not ready"
	done
	kubectl -n "$TALK_NS" get pods -o wide
	wait_for "talk delivers (talk-load /sli)" 180 delivering
	log "sli: $(sli)"
}

up_firedrill() {
	local values=(-f "$ROOT/charts/firedrill/ci/e2e-cluster-values.yaml") v
	for v in "${EXTRA_VALUES[@]}"; do values+=(-f "$v"); done
	log "helm: firedrill -> $FD_NS"
	"$HELM" upgrade --install firedrill "$ROOT/charts/firedrill" -n "$FD_NS" --create-namespace \
		"${values[@]}" \
		--set-string "operator.image.tag=$TAG" --set-string "agent.image.tag=$TAG" --wait --timeout 5m
}

up() {
	if ((FIREDRILL_ONLY)); then
		up_firedrill
		check
		return
	fi
	local talk_values=(--set-string "images.talkServer=firedrill/talk-server:$TAG"
		--set-string "images.talkLoad=firedrill/talk-load:$TAG"
		--set-string "images.nats=firedrill/nats-server:$TAG"
		--set-string "images.prometheus=firedrill/prometheus:$TAG"
		--set-string "images.alertmanager=firedrill/alertmanager:$TAG"
		# The users are outside the zone the catalog's partition and blackout take.
		--set-string "talkLoad.zone=zone-c")
	if volumes_up; then talk_values+=(--set-string "nats.storage.storageClassName=$SC"); fi
	up_firedrill
	kubectl create namespace "$TALK_NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
	# Opted in; its own Experiments may cut whole nodes (the zone blackout), and the e2e
	# tests' Experiments, from namespaces of their own, may target it.
	kubectl label namespace "$TALK_NS" firedrill.dev/chaos=enabled firedrill.dev/node-faults=allowed \
		--overwrite >/dev/null
	kubectl annotate namespace "$TALK_NS" 'firedrill.dev/allow-experiments-from=*' --overwrite >/dev/null
	log "helm: talk -> $TALK_NS (opted in, node faults granted, targets for any namespace)"
	"$HELM" upgrade --install talk "$ROOT/charts/talk" -n "$TALK_NS" "${talk_values[@]}" --timeout 5m
	check
}

down() {
	if ((FIREDRILL_ONLY)); then
		down_firedrill
		log "firedrill removed"
		return
	fi
	"$HELM" uninstall talk -n "$TALK_NS" --wait --timeout 3m 2>/dev/null || true
	# Experiments in talk's namespace first: their finalizers need the operator to revert
	# and release them. (Others' Experiments elsewhere on a shared cluster are left alone.)
	if kubectl get crd experiments.firedrill.dev >/dev/null 2>&1; then
		kubectl -n "$TALK_NS" delete experiments.firedrill.dev --all --timeout=120s >/dev/null 2>&1 || true
	fi
	kubectl delete namespace "$TALK_NS" --ignore-not-found --timeout=180s >/dev/null || true
	down_firedrill
	volumes_down
	log "firedrill and talk removed"
}

down_firedrill() {
	"$HELM" uninstall firedrill -n "$FD_NS" --wait --timeout 3m 2>/dev/null || true
	kubectl delete namespace "$FD_NS" --ignore-not-found --timeout=180s >/dev/null || true
	# Helm never deletes CRDs it installed from crds/; on a shared cluster others' tests
	# use them too, so only --crds deletes them.
	if ((DELETE_CRDS)); then
		kubectl delete crd experiments.firedrill.dev gamedays.firedrill.dev \
			drillschedules.firedrill.dev injections.firedrill.dev --ignore-not-found >/dev/null || true
	fi
}

cmd=${1:-}
shift || true
while (($#)); do
	case $1 in
	--tag) TAG=$2; shift ;;
	--crds) DELETE_CRDS=1 ;;
	--firedrill-only) FIREDRILL_ONLY=1 ;;
	--values)
		[[ -f ${2:-} ]] || die "--values needs a file, not '${2:-}'"
		EXTRA_VALUES+=("$2")
		shift
		;;
	*) die "unknown argument $1" ;;
	esac
	shift
done
kubectl version --request-timeout=5s >/dev/null 2>&1 || die "no cluster answers at $KUBECONFIG"
case $cmd in
up) up ;;
status) check ;;
down) down ;;
*) echo "usage: e2e/deploy.sh up|status|down [--tag TAG] [--crds] [--firedrill-only] [--values FILE]" >&2; exit 2 ;;
esac
