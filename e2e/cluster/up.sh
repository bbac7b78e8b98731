#!/usr/bin/env bash
# Starts firedrill's e2e cluster on this one machine: etcd and the control plane on the
# host, and one real node per zone (its own network namespace, mount namespace,
# containerd, kubelet and kube-proxy), then CoreDNS. Idempotent: what already runs is
# left alone. Stop everything with down.sh.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LOG_TAG=up

usage() {
	cat <<EOF
usage: e2e/cluster/up.sh [--no-install] [--timeout SECONDS]

Builds what is missing (build.sh), installs the Debian packages it needs (apt-get; skip
with --no-install), and starts:
  host:   etcd $ETCD_VERSION ($ETCD_CLIENT), kube-apiserver ($API_IP:$API_PORT),
          kube-controller-manager, kube-scheduler; bridge $NODE_BRIDGE ($NODE_SUBNET_PREFIX.0/24)
  nodes:  $(node_names | tr '\n' ' ')- one per zone of "$ZONES", each a network
          namespace $NODE_SUBNET_PREFIX.1N with pods in ${POD_CIDR%.*.*}.N.0/24, its own
          containerd, a kubelet (cgroup root /NODE) and kube-proxy (nftables mode)
  addons: CoreDNS $COREDNS_VERSION at $CLUSTER_DNS_IP ($CLUSTER_DOMAIN)

Waits (default 300 s) until every node is Ready and CoreDNS answers. State lives in
$STATE_DIR (admin kubeconfig: $KUBECONFIG_ADMIN), logs in $LOG_DIR.
EOF
}

INSTALL=1
TIMEOUT=300
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--no-install) INSTALL=0 ;;
	--timeout) TIMEOUT=$2; shift ;;
	*) echo "up.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
[[ $(id -u) == 0 ]] || die "run as root: it makes namespaces, cgroups and mounts"

# The three kubelets share this machine's disk and evict every pod below 1 GiB free
# (templates/kubelet.yaml): a cluster started nearer than that fails later, in a smoke test
# or a game day, with nothing but an eviction in a kubelet's log to say why.
mkdir -p "$STATE_DIR"
free_mib=$(df --output=avail -BM "$STATE_DIR" | tail -n 1 | tr -dc 0-9)
MIN_FREE_MIB=${MIN_FREE_MIB:-4096}
((free_mib >= MIN_FREE_MIB)) || die "only ${free_mib} MiB free on $(df --output=target "$STATE_DIR" | tail -n 1) ($STATE_DIR); the cluster needs ${MIN_FREE_MIB} MiB: its kubelets evict every pod below 1 GiB, and images, logs and pods take the rest. Free some (old cargo targets: cargo clean) and run again"
log "disk: ${free_mib} MiB free for $STATE_DIR (needs ${MIN_FREE_MIB})"

# ---------------------------------------------------------------------------------------
# Tools: our builds and Debian's packages.
# ---------------------------------------------------------------------------------------
need=()
for b in "$K8S_BIN"/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kube-proxy,kubectl,pause} \
	"$COREDNS_BIN/coredns" "$ETCD_BIN/etcd" "$(probe_bin)"; do
	[[ -x $b ]] || need+=("$(basename "$b")")
done
if ((${#need[@]})); then
	log "building ${need[*]} (build.sh)"
	"$CLUSTER_DIR/build.sh" "${need[@]}"
fi

missing=()
for p in $DEBIAN_PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	((INSTALL)) || die "missing Debian packages: ${missing[*]} (run without --no-install)"
	log "apt-get install ${missing[*]}"
	# No init system runs here; keep the packages' own services (a host containerd) off.
	export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
log "containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}'), CNI plugins $(dpkg-query -W -f='${Version}' containernetworking-plugins)"
CNI_BIN=/usr/lib/cni
[[ -x $CNI_BIN/bridge ]] || die "no CNI bridge plugin in $CNI_BIN"

# Our ranges must not overlap anything routed here already (other than our own routes).
for r in "$NODE_SUBNET_PREFIX.0/24" "$POD_CIDR" "$SERVICE_CIDR"; do
	clash=$(ip -4 route show to match "${r%/*}" | grep -v -e '^default' -e "$NODE_BRIDGE" || true)
	[[ -z $clash ]] || die "$r collides with a route here: $clash"
done

mkdir -p "$STATE_DIR" "$PKI" "$LOG_DIR" "$PID_DIR" "$STATE_DIR/kubeconfigs"
chmod 700 "$STATE_DIR"

# ---------------------------------------------------------------------------------------
# PKI: one CA signs every certificate; kubelets make their own serving certificates.
# ---------------------------------------------------------------------------------------
ca_cert firedrill-cluster-ca
cert apiserver "/CN=kube-apiserver" \
	"basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:$API_IP,IP:$KUBERNETES_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN\n"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$CLIENT"
cert admin "/O=system:masters/CN=firedrill-admin" "$CLIENT"
cert controller-manager "/CN=system:kube-controller-manager" "$CLIENT"
cert scheduler "/CN=system:kube-scheduler" "$CLIENT"
cert kube-proxy "/CN=system:kube-proxy" "$CLIENT"
for n in $(node_names); do
	cert "kubelet-$n" "/O=system:nodes/CN=system:node:$n" "$CLIENT"
done
sa_key
chmod 600 "$PKI"/*.key

KC=$STATE_DIR/kubeconfigs
kubeconfig "$KUBECONFIG_ADMIN" admin
for c in controller-manager scheduler kube-proxy; do kubeconfig "$KC/$c.conf" "$c"; done
for n in $(node_names); do kubeconfig "$KC/kubelet-$n.conf" "kubelet-$n"; done
log "PKI and kubeconfigs in $STATE_DIR"

# ---------------------------------------------------------------------------------------
# Network: a host bridge; each node a network namespace with a veth on it. Pod subnets
# are routed node to node (and from the host) over the bridge; no overlay, no NAT.
# ---------------------------------------------------------------------------------------
if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
	ip link add "$NODE_BRIDGE" type bridge
	ip addr add "$API_IP/24" dev "$NODE_BRIDGE"
fi
ip link set "$NODE_BRIDGE" up
for n in $(node_names); do
	[[ -e /run/netns/$n ]] || ip netns add "$n"
	veth=$(node_veth "$n")
	if ! ip link show "$veth" >/dev/null 2>&1; then
		ip link add "$veth" type veth peer name eth0 netns "$n"
		ip -n "$n" addr add "$(node_ip "$n")/24" dev eth0
	fi
	ip link set "$veth" master "$NODE_BRIDGE" up
	ip -n "$n" link set lo up
	ip -n "$n" link set eth0 up
	ip -n "$n" route replace default via "$API_IP"
	for m in $(node_names); do
		[[ $m == "$n" ]] || ip -n "$n" route replace "$(node_pod_cidr "$m")" via "$(node_ip "$m")"
	done
	ip route replace "$(node_pod_cidr "$n")" via "$(node_ip "$n")"
	# A node routes for its pods; bridged pod traffic must meet kube-proxy's rules.
	nsenter --net="/run/netns/$n" sysctl -q -w net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
done
log "network: $NODE_BRIDGE $API_IP/24, nodes $(for n in $(node_names); do printf '%s=%s(pods %s) ' "$n" "$(node_ip "$n")" "$(node_pod_cidr "$n")"; done)"

# ---------------------------------------------------------------------------------------
# Control plane on the host.
# ---------------------------------------------------------------------------------------
start_daemon etcd "$ETCD_BIN/etcd" --name fd-etcd --data-dir "$STATE_DIR/etcd" \
	--listen-client-urls "http://$ETCD_CLIENT" --advertise-client-urls "http://$ETCD_CLIENT" \
	--listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
	--initial-cluster "fd-etcd=http://$ETCD_PEER" --log-level warn
wait_for 60 "etcd health" curl -fsS "http://$ETCD_CLIENT/health"
log "etcd ready"

start_daemon kube-apiserver "$K8S_BIN/kube-apiserver" \
	--etcd-servers="http://$ETCD_CLIENT" \
	--bind-address="$API_IP" --advertise-address="$API_IP" --secure-port="$API_PORT" \
	--service-cluster-ip-range="$SERVICE_CIDR" \
	--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
	--client-ca-file="$PKI/ca.crt" \
	--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
	--kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
	--kubelet-preferred-address-types=InternalIP \
	--authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
	--allow-privileged=true \
	--service-account-issuer="https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
	--service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
	--profiling=false
wait_for 120 "kube-apiserver /readyz" kc get --raw /readyz
log "kube-apiserver ready"

start_daemon kube-controller-manager "$K8S_BIN/kube-controller-manager" \
	--kubeconfig="$KC/controller-manager.conf" \
	--authentication-kubeconfig="$KC/controller-manager.conf" \
	--authorization-kubeconfig="$KC/controller-manager.conf" \
	--bind-address=127.0.0.1 --cluster-name=firedrill \
	--cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
	--root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
	--use-service-account-credentials=true --leader-elect=false \
	--allocate-node-cidrs=false --service-cluster-ip-range="$SERVICE_CIDR" --profiling=false
start_daemon kube-scheduler "$K8S_BIN/kube-scheduler" \
	--kubeconfig="$KC/scheduler.conf" \
	--authentication-kubeconfig="$KC/scheduler.conf" --authorization-kubeconfig="$KC/scheduler.conf" \
	--bind-address=127.0.0.1 --leader-elect=false --profiling=false
wait_for 60 "kube-controller-manager healthz" curl -fsSk https://127.0.0.1:10257/healthz
wait_for 60 "kube-scheduler healthz" curl -fsSk https://127.0.0.1:10259/healthz
log "controller-manager and scheduler ready"

# ---------------------------------------------------------------------------------------
# Nodes.
# ---------------------------------------------------------------------------------------
# render TEMPLATE DEST SED_ARGS...: fills in templates/TEMPLATE; DEST is rewritten only when
# it would change, because kube-proxy exits when its config file is written to at all.
render() {
	local tpl=$1 dest=$2
	shift 2
	sed "$@" "$CLUSTER_DIR/templates/$tpl" >"$dest.new"
	if cmp -s "$dest.new" "$dest"; then rm -f "$dest.new"; else mv -f "$dest.new" "$dest"; fi
}
# The files that hold each node's mount namespace must sit on a private mount.
mkdir -p "$NS_DIR"
if ! grep -q " $NS_DIR " /proc/self/mountinfo; then
	mount --bind "$NS_DIR" "$NS_DIR"
	mount --make-private "$NS_DIR"
fi
# Mount points a node covers with its own directory; made here only if missing (and then
# removed again by down.sh).
for d in /run/containerd /var/lib/cni /var/log/containers; do
	if [[ ! -d $d ]]; then
		mkdir -p "$d"
		echo "$d" >>"$RUN_DIR/created-dirs"
	fi
done

for n in $(node_names); do
	nd=$(node_dir "$n")
	nr=$(node_run "$n")
	mkdir -p "$nd"/{containerd,kubelet,pod-logs,container-logs,cni/net.d,cni/lib,opt} "$nr"

	# cgroup v1: the kubelet's cgroupRoot must exist in every hierarchy.
	for h in $(cgroup_hierarchies); do
		if [[ ! -d $h/$n ]]; then
			mkdir "$h/$n"
			if [[ -f $h/cpuset.cpus ]]; then
				cat "$h/cpuset.cpus" >"$h/$n/cpuset.cpus"
				cat "$h/cpuset.mems" >"$h/$n/cpuset.mems"
			fi
		fi
	done

	# A private mount namespace (a slave of the host's), so that the kubelet's volume
	# mounts, containerd's overlay and shm mounts and the pods' network namespace files
	# stay inside the node and go away with it.
	if ! grep -q " $NS_DIR/$n.mnt " /proc/self/mountinfo; then
		touch "$NS_DIR/$n.mnt"
		unshare --mount="$NS_DIR/$n.mnt" --propagation slave -- sh -euc "
			mount -t tmpfs -o mode=0711 fd-run-containerd /run/containerd
			mount -t tmpfs -o mode=0755 fd-run-netns /run/netns
			mount --bind '$nd/cni/lib' /var/lib/cni
			mount --bind '$nd/container-logs' /var/log/containers
		"
	fi

	render containerd.toml "$nd/containerd.toml" -e "s#@ROOT@#$nd#g" -e "s#@RUN@#$nr#g" \
		-e "s#@PAUSE_IMAGE@#$PAUSE_IMAGE#g" -e "s#@CNI_BIN@#$CNI_BIN#g"
	render 10-fd-bridge.conflist "$nd/cni/net.d/10-fd-bridge.conflist" \
		-e "s#@POD_SUBNET@#$(node_pod_cidr "$n")#g" -e "s#@DATA_DIR@#$nd/cni/lib/networks#g"
	start_daemon "$n-containerd" nsenter --mount="$NS_DIR/$n.mnt" --net="/run/netns/$n" -- \
		containerd --config "$nd/containerd.toml"
done
for n in $(node_names); do
	wait_for 60 "$n containerd" ctr -a "$(node_sock "$n")" version
done
log "containerd ready on every node"

# Images: built from files on disk, imported into every node (nothing can be pulled).
"$CLUSTER_DIR/image.sh" "$PAUSE_IMAGE" "$K8S_BIN/pause"
"$CLUSTER_DIR/image.sh" "$COREDNS_IMAGE" "$COREDNS_BIN/coredns"

start_kubelet() {
	local n=$1 nd
	nd=$(node_dir "$n")
	start_daemon "$n-kubelet" nsenter --mount="$NS_DIR/$n.mnt" --net="/run/netns/$n" -- \
		"$K8S_BIN/kubelet" --config="$nd/kubelet.yaml" --kubeconfig="$KC/kubelet-$n.conf" \
		--root-dir="$nd/kubelet" --hostname-override="$n" --node-ip="$(node_ip "$n")" \
		--node-labels="topology.kubernetes.io/zone=$(node_zone "$n"),topology.kubernetes.io/region=firedrill"
}

# A kubelet that exits while its node registers is started again, as systemd restarts it
# on a real node (at most 3 times); the end of its log says why it exited. (Seen once in
# CI: fd-zone-a's kubelet gone within seconds of its start, on a run after the lab tests.)
declare -A kubelet_restarts=()
kubelet_running() {
	local n=$1 pid tries
	pid=$(cat "$PID_DIR/$n-kubelet.pid" 2>/dev/null || true)
	if pid_alive "$pid"; then return 0; fi
	tries=${kubelet_restarts[$n]:-0}
	log "WARNING: $n-kubelet (pid $pid) exited; the end of its log:" >&2
	tail -n 20 "$LOG_DIR/$n-kubelet.log" | sed 's/^/    /' >&2
	((tries < 3)) || die "$n-kubelet exited $((tries + 1)) times"
	kubelet_restarts[$n]=$((tries + 1))
	start_kubelet "$n"
}

for n in $(node_names); do
	nd=$(node_dir "$n")
	render kubelet.yaml "$nd/kubelet.yaml" -e "s#@NODE@#$n#g" -e "s#@NODE_IP@#$(node_ip "$n")#g" \
		-e "s#@SOCK@#$(node_sock "$n")#g" -e "s#@POD_LOGS@#$nd/pod-logs#g" -e "s#@CA@#$PKI/ca.crt#g" \
		-e "s#@DNS@#$CLUSTER_DNS_IP#g" -e "s#@DOMAIN@#$CLUSTER_DOMAIN#g"
	start_kubelet "$n"
	render kube-proxy.yaml "$nd/kube-proxy.yaml" -e "s#@NODE@#$n#g" \
		-e "s#@KUBECONFIG@#$KC/kube-proxy.conf#g" -e "s#@POD_CIDR@#$POD_CIDR#g"
	start_daemon "$n-kube-proxy" nsenter --mount="$NS_DIR/$n.mnt" --net="/run/netns/$n" -- \
		"$K8S_BIN/kube-proxy" --config="$nd/kube-proxy.yaml"
done

# The pod subnets are fixed per node (the CNI config above names them), so record them
# on the Node objects rather than letting the controller-manager choose.
for n in $(node_names); do
	for ((waited = 0; ; waited++)); do
		kubelet_running "$n"
		if kc get node "$n" >/dev/null 2>&1; then break; fi
		((waited < TIMEOUT)) || die "timed out after ${TIMEOUT}s waiting for node $n to register"
		sleep 1
	done
	cidr=$(node_pod_cidr "$n")
	if [[ -z $(kc get node "$n" -o jsonpath='{.spec.podCIDR}') ]]; then
		kc patch node "$n" --type merge -p "{\"spec\":{\"podCIDR\":\"$cidr\",\"podCIDRs\":[\"$cidr\"]}}" >/dev/null
	fi
done
log "nodes registered"
kc wait --for=condition=Ready node --all --timeout="${TIMEOUT}s" >/dev/null
log "all nodes Ready: $(kc get nodes -L topology.kubernetes.io/zone --no-headers | awk '{printf "%s(%s,%s) ", $1, $NF, $2}')"

# ---------------------------------------------------------------------------------------
# CoreDNS.
# ---------------------------------------------------------------------------------------
sed -e "s#@COREDNS_IMAGE@#$COREDNS_IMAGE#g" -e "s#@DNS@#$CLUSTER_DNS_IP#g" -e "s#@DOMAIN@#$CLUSTER_DOMAIN#g" \
	"$CLUSTER_DIR/manifests/coredns.yaml" | kc apply -f - >/dev/null
kc -n kube-system rollout status deployment/coredns --timeout="${TIMEOUT}s" >/dev/null
log "CoreDNS rolled out"
# Ask the Service address from inside a node, through kube-proxy's rules.
# sed reads every line: with head, node_names could be killed by SIGPIPE mid-loop, and
# pipefail would end up.sh with status 141.
first=$(node_names | sed -n 1p)
want="kubernetes.default.svc.$CLUSTER_DOMAIN"
wait_for 60 "CoreDNS to answer $want" nsenter --net="/run/netns/$first" "$(probe_bin)" dns --server "$CLUSTER_DNS_IP" "$want"
log "CoreDNS answers: $want = $(nsenter --net="/run/netns/$first" "$(probe_bin)" dns --server "$CLUSTER_DNS_IP" "$want")"

log "cluster up in $(($(date +%s) - T0))s; export KUBECONFIG=$KUBECONFIG_ADMIN"
"$CLUSTER_DIR/status.sh" --memory
