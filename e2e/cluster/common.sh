# Shared by up.sh, down.sh, image.sh and smoke.sh: names, paths and small helpers of
# firedrill's e2e cluster. Sourced, not run.
# shellcheck shell=bash
# shellcheck disable=SC2034 # the scripts that source this use these

CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$CLUSTER_DIR/versions.env"

K8S_BIN=$CACHE_ROOT/k8s-$K8S_VERSION/bin
COREDNS_BIN=$CACHE_ROOT/coredns-$COREDNS_VERSION/bin
ETCD_BIN=$CACHE_ROOT/etcd-$ETCD_VERSION/bin
probe_bin() {
	echo "$CACHE_ROOT/fd-probe-$(cat "$CLUSTER_DIR"/probe/go.mod "$CLUSTER_DIR"/probe/*.go | sha256sum | cut -c1-12)/bin/fd-probe"
}

# Runtime state that must not outlive a boot: pid files, sockets, containerd state and the
# files that hold each node's mount namespace open.
RUN_DIR=/run/firedrill-cluster
PID_DIR=$RUN_DIR/pids
NS_DIR=$RUN_DIR/ns
PKI=$STATE_DIR/pki
LOG_DIR=$STATE_DIR/logs
KUBECONFIG_ADMIN=$STATE_DIR/kubeconfig
API_IP=$NODE_SUBNET_PREFIX.1
API_PORT=6443
ETCD_CLIENT=127.0.0.1:12379 # not etcd's default ports: leave those to anything else here
ETCD_PEER=127.0.0.1:12380

T0=${T0:-$(date +%s)}
log() { printf '[%s %4ds] %s\n' "${LOG_TAG:-cluster}" "$(($(date +%s) - T0))" "$*"; }
die() {
	log "ERROR: $*" >&2
	exit 1
}

# Nodes: one per zone, numbered from 1 so that zone-a is 172.30.0.11 with pods in
# 10.244.1.0/24.
node_names() {
	local z
	for z in $ZONES; do echo "fd-$z"; done
}
node_index() {
	local i=1 z
	for z in $ZONES; do
		[[ fd-$z == "$1" ]] && echo "$i" && return
		i=$((i + 1))
	done
	return 1
}
node_zone() { echo "${1#fd-}"; }
node_ip() { echo "$NODE_SUBNET_PREFIX.$((10 + $(node_index "$1")))"; }
node_pod_cidr() { echo "${POD_CIDR%%.*}.$(cut -d. -f2 <<<"$POD_CIDR").$(node_index "$1").0/24"; }
node_dir() { echo "$STATE_DIR/nodes/$1"; }
node_run() { echo "$RUN_DIR/$1"; }
node_sock() { echo "$RUN_DIR/$1/containerd.sock"; }
node_veth() { echo "$1-h"; } # host end; fits IFNAMSIZ for fd-zone-X

# Runs a command inside a node: its network namespace and its private mount namespace,
# where its containerd, kubelet and kube-proxy live.
node_exec() {
	local n=$1
	shift
	nsenter --mount="$NS_DIR/$n.mnt" --net="/run/netns/$n" -- "$@"
}

# The cgroup v1 hierarchies mounted here (cpu, memory, ..., name=systemd).
cgroup_hierarchies() {
	local d
	for d in /sys/fs/cgroup/*/; do
		if [[ -f $d/cgroup.procs ]]; then echo "${d%/}"; fi
	done
}

pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

# start_daemon NAME CMD...: runs CMD in its own session, logs to $LOG_DIR/NAME.log and
# remembers its pid in $PID_DIR/NAME.pid; does nothing if that pid still runs.
start_daemon() {
	local name=$1 pid
	shift
	mkdir -p "$PID_DIR" "$LOG_DIR"
	pid=$(cat "$PID_DIR/$name.pid" 2>/dev/null || true)
	if pid_alive "$pid"; then
		log "$name: already running (pid $pid)"
		return
	fi
	setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
	echo $! >"$PID_DIR/$name.pid"
	log "$name: started (pid $!, log $LOG_DIR/$name.log)"
}

# wait_for SECONDS WHAT CMD...: polls CMD every second until it succeeds.
wait_for() {
	local secs=$1 what=$2 i
	shift 2
	for ((i = 0; i < secs; i++)); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 1
	done
	die "timed out after ${secs}s waiting for $what"
}

# PKI and kubeconfigs, for up.sh (and operator/bench/apiserver.sh): files in $PKI, the API
# server at https://$API_IP:$API_PORT.
# key NAME: an RSA key $PKI/NAME.key unless it exists.
key() { [[ -f $PKI/$1.key ]] || openssl genrsa -out "$PKI/$1.key" 2048 2>/dev/null; }
# ca_cert CN: the CA that signs everything ($PKI/ca.key, ca.crt) unless it exists.
ca_cert() {
	[[ -f $PKI/ca.crt ]] && return
	key ca
	openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=$1" -days 3650 \
		-addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature' \
		-out "$PKI/ca.crt" 2>/dev/null
}
# cert NAME SUBJECT EXTENSIONS: signs NAME.crt for NAME.key unless it exists.
cert() {
	local name=$1 subj=$2 ext=$3
	[[ -f $PKI/$name.crt ]] && return
	key "$name"
	openssl req -new -key "$PKI/$name.key" -subj "$subj" 2>/dev/null |
		openssl x509 -req -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
			-days 3650 -extfile <(printf '%b' "$ext") -out "$PKI/$name.crt" 2>/dev/null
}
# sa_key: the service-account signing key pair ($PKI/sa.key, sa.pub) unless it exists.
sa_key() {
	[[ -f $PKI/sa.pub ]] && return
	key sa
	openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}
CLIENT='basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n'

# kubeconfig FILE NAME: a kubeconfig for the client certificate NAME.
kubeconfig() {
	[[ -f $1 ]] && return
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: firedrill
  cluster:
    server: https://$API_IP:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$2.crt")
    client-key-data: $(base64 -w0 "$PKI/$2.key")
contexts:
- name: firedrill
  context:
    cluster: firedrill
    user: $2
current-context: firedrill
EOF
	chmod 600 "$1"
}

kc() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
