#!/usr/bin/env bash
# Stops firedrill's e2e cluster and leaves the machine as it was: no processes, network
# namespaces, links, routes, mounts, cgroups or state of ours. Safe to run at any time,
# also after a half-failed up.sh or twice in a row; it ends by checking and says what it
# could not clean (exit 1).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LOG_TAG=down

usage() {
	cat <<EOF
usage: e2e/cluster/down.sh [--keep-state]

Kills the nodes' pods, kubelets, kube-proxies and containerds, the control plane and
etcd; removes the node cgroups (/sys/fs/cgroup/*/fd-zone-*), mount and network
namespaces, $NODE_BRIDGE and its routes, $RUN_DIR and $STATE_DIR, the deployed
workload's volumes (/var/lib/firedrill-e2e) and agents' journals
(/var/lib/firedrill-agent/<node>) (--keep-state keeps those and $STATE_DIR: PKI, etcd
data and logs). Then checks that
nothing is left and exits 1 if something is.
EOF
}
KEEP=0
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--keep-state) KEEP=1 ;;
	*) echo "down.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
[[ $(id -u) == 0 ]] || die "run as root"

# Processes of ours that may outlive their pid file: daemons and containerd shims name
# our directories on their command line. Never this shell or its parents.
our_pids() {
	local p cmd
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[[ $p == "$$" || $p == "$PPID" ]] && continue
		cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
		case $cmd in
		# By the cluster's own files, not by binary: the same cached binaries may run
		# for something else here (the operator's scale benchmark starts its own API server).
		*"$RUN_DIR/"* | *"$STATE_DIR/"*) echo "$p" ;;
		esac
	done
	return 0
}
# Every process in a node's cgroups (the pods' processes), in any hierarchy.
cgroup_pids() {
	local h n
	for h in $(cgroup_hierarchies); do
		for n in $(node_names); do
			if [[ -d $h/$n ]]; then find "$h/$n" -name cgroup.procs -exec cat {} + 2>/dev/null || true; fi
		done
	done | sort -u
}

# stop NAME...: TERM the pids in the NAMEs' pid files together, then KILL what still runs
# after 10 s.
stop() {
	local name pid i alive
	local -A pids=()
	for name in "$@"; do
		pid=$(cat "$PID_DIR/$name.pid" 2>/dev/null || true)
		if pid_alive "$pid"; then
			pids[$name]=$pid
			kill -TERM "$pid" 2>/dev/null || true
		fi
		rm -f "$PID_DIR/$name.pid"
	done
	for ((i = 0; i < 100; i++)); do
		alive=0
		for pid in "${pids[@]}"; do
			# A zombie has exited; only its parent has yet to notice.
			if pid_alive "$pid" && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then alive=1; fi
		done
		((alive)) || break
		sleep 0.1
	done
	for name in "${!pids[@]}"; do
		kill -KILL "${pids[$name]}" 2>/dev/null || true
		log "$name: stopped (pid ${pids[$name]})"
	done
}

# 1. Nodes: kubelet and kube-proxy first, so nothing restarts the pods; then the pods,
# through their containerd, so shims unmount what they mounted; then containerd.
mapfile -t nodes < <(node_names)
stop "${nodes[@]/%/-kubelet}" "${nodes[@]/%/-kube-proxy}"
for n in $(node_names); do
	sock=$(node_sock "$n")
	if [[ -S $sock ]] && timeout 5 ctr -a "$sock" version >/dev/null 2>&1; then
		c=(timeout 10 ctr -a "$sock" -n k8s.io)
		tasks=$("${c[@]}" tasks ls -q 2>/dev/null || true)
		for t in $tasks; do "${c[@]}" tasks kill -a -s SIGKILL "$t" >/dev/null 2>&1 || true; done
		for t in $tasks; do "${c[@]}" tasks rm -f "$t" >/dev/null 2>&1 || true; done
		for k in $("${c[@]}" containers ls -q 2>/dev/null || true); do
			"${c[@]}" containers rm "$k" >/dev/null 2>&1 || true
		done
		[[ -n $tasks ]] && log "$n: killed $(wc -w <<<"$tasks") containers"
	fi
done
stop "${nodes[@]/%/-containerd}"

# 2. Control plane.
stop kube-scheduler kube-controller-manager
stop kube-apiserver
stop etcd

# 3. Whatever is left: shims, pods' processes, daemons whose pid file was lost.
for ((i = 0; i < 50; i++)); do
	left=$( (our_pids; cgroup_pids) | sort -u)
	[[ -z $left ]] && break
	# shellcheck disable=SC2086 # one pid a word
	kill -KILL $left 2>/dev/null || true
	((i == 0)) && log "killed leftover processes: ${left//$'\n'/ }"
	sleep 0.2
done

# 4. cgroups, deepest first (a cgroup goes only once empty).
for h in $(cgroup_hierarchies); do
	for n in $(node_names); do
		[[ -d $h/$n ]] || continue
		for ((i = 0; i < 20; i++)); do
			find "$h/$n" -depth -type d -exec rmdir {} + 2>/dev/null || true
			[[ -d $h/$n ]] || break
			sleep 0.2
		done
	done
done

# 5. Mounts: a node's mount namespace (and every mount in it) ends when the last process
# in it is gone and the file that holds it is unmounted.
for n in $(node_names); do
	if grep -q " $NS_DIR/$n.mnt " /proc/self/mountinfo; then umount "$NS_DIR/$n.mnt" || umount -l "$NS_DIR/$n.mnt"; fi
done
grep -q " $NS_DIR " /proc/self/mountinfo && { umount "$NS_DIR" || umount -l "$NS_DIR"; }
# Anything of ours still mounted on the host (from a run that went wrong), deepest first.
awk '{print $5}' /proc/self/mountinfo | { grep -e "^$RUN_DIR" -e "^$STATE_DIR" || true; } | sort -r | while read -r m; do
	umount "$m" 2>/dev/null || umount -l "$m" || true
done

# 6. Network: namespaces (their veths and kube-proxy's rules go with them), the bridge and
# the host routes to the pod subnets.
for n in $(node_names); do
	ip route del "$(node_pod_cidr "$n")" 2>/dev/null || true
	ip link del "$(node_veth "$n")" 2>/dev/null || true
	[[ -e /run/netns/$n ]] && ip netns del "$n"
done
ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && ip link del "$NODE_BRIDGE"

# 7. Files.
if [[ -f $RUN_DIR/created-dirs ]]; then
	# Only empty directories: a host ctr may have left its empty fifo directory inside.
	while read -r d; do find "$d" -depth -type d -empty -delete 2>/dev/null || true; done <"$RUN_DIR/created-dirs"
fi
rm -rf "$RUN_DIR"
((KEEP)) || rm -rf "$STATE_DIR"
# The local volumes e2e/deploy.sh made for the nodes' pods: their data belongs to this
# cluster, and a NATS of the next cluster finding a stale stream on them takes minutes to
# reconcile it (talk then missed its rollout timeout).
((KEEP)) || rm -rf /var/lib/firedrill-e2e
# The deployed agents' crash journals (the chart's agent.journal.hostPath, a directory per
# node). The nodes and every fault in them are gone with the cluster; a journal left here
# would have the next cluster's agent "revert" faults that no longer exist.
if ((!KEEP)); then
	for n in $(node_names); do rm -rf "/var/lib/firedrill-agent/$n"; done
	rmdir /var/lib/firedrill-agent 2>/dev/null || true
fi

# 8. Check.
bad=()
left=$( (our_pids; cgroup_pids) | sort -u)
[[ -z $left ]] || bad+=("processes: $(echo "$left" | tr '\n' ' ')")
m=$(grep -e "$RUN_DIR" -e "$STATE_DIR" -e fd-run- /proc/self/mountinfo || true)
[[ -z $m ]] || bad+=("mounts: $m")
for n in $(node_names); do
	[[ -e /run/netns/$n ]] && bad+=("netns $n")
	ip link show "$(node_veth "$n")" >/dev/null 2>&1 && bad+=("link $(node_veth "$n")")
	ip route show "$(node_pod_cidr "$n")" | grep -q . && bad+=("route $(node_pod_cidr "$n")")
	for h in $(cgroup_hierarchies); do [[ -d $h/$n ]] && bad+=("cgroup $h/$n"); done
done
ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && bad+=("bridge $NODE_BRIDGE")
# All our rules live in the node namespaces; none may have reached the host's tables.
nft list ruleset 2>/dev/null | grep -qiE 'kube|cni-|fd-' && bad+=("nftables rules on the host (nft list ruleset)")
[[ -e $RUN_DIR ]] && bad+=("$RUN_DIR")
if ((${#bad[@]})); then
	log "NOT clean:"
	printf '  %s\n' "${bad[@]}" >&2
	exit 1
fi
log "clean: no processes, namespaces, links, routes, mounts, cgroups or rules of the cluster left"
