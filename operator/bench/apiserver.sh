#!/usr/bin/env bash
# A private etcd and kube-apiserver for the operator's scale benchmark (benches/scale.rs
# starts this; run it by hand only to try it). Same binaries, PKI and flags as the e2e
# cluster (e2e/cluster/common.sh, up.sh), but nothing of it is shared: 127.0.0.1 with its
# own ports, its own directory under /var/tmp, no kubelets, no controller-manager.
#
# Prints "DIR <dir>", then "READY <kubeconfig>" once /readyz answers, and runs until its
# parent exits or it gets INT/TERM/HUP; then it stops what it started, and the operator if
# the benchmark recorded its pid in <dir>/pids/operator.pid, and removes <dir> (keeping its
# logs, the operator's too, in /var/tmp/fd-bench-scale-logs.last).
set -euo pipefail
# shellcheck source=../../e2e/cluster/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../e2e/cluster/common.sh"
LOG_TAG=bench-apiserver

# Everything below is private to this run: common.sh's helpers read these names.
API_IP=127.0.0.1
API_PORT=${FD_BENCH_API_PORT:-16443}
ETCD_CLIENT=127.0.0.1:${FD_BENCH_ETCD_PORT:-22379}
ETCD_PEER=127.0.0.1:$((${FD_BENCH_ETCD_PORT:-22379} + 1))
PARENT=$PPID
LAST_LOGS=/var/tmp/fd-bench-scale-logs.last

[[ $(id -u) == 0 ]] || die "run as root"
for b in "$ETCD_BIN/etcd" "$K8S_BIN/kube-apiserver" "$K8S_BIN/kubectl"; do
	[[ -x $b ]] || die "missing $b (e2e/cluster/build.sh builds it)"
done
for p in "$API_PORT" "${ETCD_CLIENT#*:}" "${ETCD_PEER#*:}"; do
	if ss -Htln "sport = :$p" | grep -q .; then die "port $p is in use (another benchmark?)"; fi
done

STATE_DIR=$(mktemp -d /var/tmp/fd-bench-scale.XXXXXX)
PKI=$STATE_DIR/pki
LOG_DIR=$STATE_DIR/logs
PID_DIR=$STATE_DIR/pids
KUBECONFIG_ADMIN=$STATE_DIR/kubeconfig

# Alive and not a zombie (what this shell started and has not reaped yet).
running() { [[ $(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) == [^Z] ]]; }
# stop NAME: TERM to the pid in $PID_DIR/NAME.pid, KILL if it still runs 10 s later.
stop() {
	local pid i
	pid=$(cat "$PID_DIR/$1.pid" 2>/dev/null) || return 0
	running "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		running "$pid" || return 0
		sleep 0.1
	done
	log "$1 (pid $pid) still runs 10 s after TERM: KILL" >&2
	kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	# Clients first, etcd last.
	stop operator
	stop kube-apiserver
	stop etcd
	# The logs of the last run stay for a look afterwards.
	rm -rf "$LAST_LOGS"
	mv "$LOG_DIR" "$LAST_LOGS" 2>/dev/null || true
	rm -rf "$STATE_DIR"
	log "stopped etcd and kube-apiserver, removed $STATE_DIR (logs in $LAST_LOGS)" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

mkdir -p "$PKI" "$LOG_DIR" "$PID_DIR"
chmod 700 "$STATE_DIR"
echo "DIR $STATE_DIR"

ca_cert firedrill-bench-ca
cert apiserver "/CN=kube-apiserver" \
	"basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
cert admin "/O=system:masters/CN=firedrill-admin" "$CLIENT"
sa_key
chmod 600 "$PKI"/*.key
kubeconfig "$KUBECONFIG_ADMIN" admin

start_daemon etcd "$ETCD_BIN/etcd" --name fd-bench-etcd --data-dir "$STATE_DIR/etcd" \
	--listen-client-urls "http://$ETCD_CLIENT" --advertise-client-urls "http://$ETCD_CLIENT" \
	--listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
	--initial-cluster "fd-bench-etcd=http://$ETCD_PEER" --log-level warn
wait_for 60 "etcd health" curl -fsS "http://$ETCD_CLIENT/health"

start_daemon kube-apiserver "$K8S_BIN/kube-apiserver" \
	--etcd-servers="http://$ETCD_CLIENT" \
	--bind-address="$API_IP" --advertise-address="$API_IP" --secure-port="$API_PORT" \
	--service-cluster-ip-range="$SERVICE_CIDR" \
	--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
	--client-ca-file="$PKI/ca.crt" \
	--authorization-mode=RBAC \
	--service-account-issuer="https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
	--service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
	--profiling=false
wait_for 120 "kube-apiserver /readyz" kc get --raw /readyz
log "etcd $ETCD_CLIENT and kube-apiserver https://$API_IP:$API_PORT ready" >&2
echo "READY $KUBECONFIG_ADMIN"

# Until the benchmark is gone (however it ended) or asks us to stop.
while kill -0 "$PARENT" 2>/dev/null; do sleep 1; done
