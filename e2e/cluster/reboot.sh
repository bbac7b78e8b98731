#!/usr/bin/env bash
# Reboots one node of firedrill's e2e cluster the way a power cycle does: every process of
# the node killed at once, no process told first (kubelet, kube-proxy, containerd, the
# shims and every pod, firedrill's agent included); what a reboot wipes, wiped (its /run:
# containerd's state and sockets, the pods' network namespaces and the kubelet's tmpfs
# volumes, all in the node's mount namespace; the node's own network namespace with
# kube-proxy's rules and anything else in it, made anew; its cgroups); what lives on disk
# kept (the kubelet's and containerd's directories, the local volumes, the agent's
# journal). After --down SECONDS, up.sh starts the node again as it would boot: the
# kubelet finds its pods' sandboxes dead and makes new ones.
#
# Not like a real reboot: the machine's boot ID and clock go on (the kubelet reports no
# "Rebooted" event), and process ids keep counting.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LOG_TAG=reboot

usage() {
	cat <<EOF
usage: e2e/cluster/reboot.sh [--down SECONDS] NODE

Power-cycles NODE (one of: $(node_names | tr '\n' ' ')), which stays off for SECONDS
(default 5), then starts it again with up.sh --no-install and waits until it is Ready.
EOF
}
DOWN=5
NODE=
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--down) DOWN=$2; shift ;;
	-*) echo "reboot.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	*) NODE=$1 ;;
	esac
	shift
done
[[ $(id -u) == 0 ]] || die "run as root"
[[ -n $NODE ]] && node_index "$NODE" >/dev/null || { usage >&2; exit 2; }
[[ -e /run/netns/$NODE ]] || die "node $NODE is not up"

# Every process of the node: its daemons (by pid file), the shims of its containerd (by
# its socket on their command line), and whatever runs in its cgroups (the pods).
node_pids() {
	local name pid p cmd h
	for name in kubelet kube-proxy containerd; do
		pid=$(cat "$PID_DIR/$NODE-$name.pid" 2>/dev/null || true)
		if pid_alive "$pid"; then echo "$pid"; fi
	done
	for p in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
		case $cmd in *"$(node_run "$NODE")/"*) echo "${p#/proc/}" ;; esac
	done
	for h in $(cgroup_hierarchies); do
		if [[ -d $h/$NODE ]]; then find "$h/$NODE" -name cgroup.procs -exec cat {} + 2>/dev/null || true; fi
	done
	return 0
}

log "$NODE: power off"
for ((i = 0; i < 50; i++)); do
	left=$(node_pids | sort -u)
	[[ -z $left ]] && break
	# shellcheck disable=SC2086 # one pid a word
	kill -KILL $left 2>/dev/null || true
	((i == 0)) && log "$NODE: killed $(wc -w <<<"$left") processes"
	sleep 0.2
done
[[ -z $(node_pids) ]] || die "$NODE: processes still alive: $(node_pids | tr '\n' ' ')"
rm -f "$PID_DIR/$NODE"-{kubelet,kube-proxy,containerd}.pid

# Its cgroups, deepest first (a cgroup goes once empty); up.sh makes the node's again.
for h in $(cgroup_hierarchies); do
	[[ -d $h/$NODE ]] || continue
	for ((i = 0; i < 20; i++)); do
		find "$h/$NODE" -depth -type d -exec rmdir {} + 2>/dev/null || true
		[[ -d $h/$NODE ]] || break
		sleep 0.2
	done
done
# Its /run: the mount namespace (tmpfs /run/containerd and /run/netns, the pods'
# namespace files and volume mounts) ends with its last process and its file unmounted;
# containerd's state directory and sockets go too.
if grep -q " $NS_DIR/$NODE.mnt " /proc/self/mountinfo; then
	umount "$NS_DIR/$NODE.mnt" || umount -l "$NS_DIR/$NODE.mnt"
fi
rm -f "$NS_DIR/$NODE.mnt"
rm -rf "$(node_run "$NODE")"
# Its network namespace (its veth and every rule in it go along).
ip netns del "$NODE"
log "$NODE: off; on again in ${DOWN}s"
sleep "$DOWN"

log "$NODE: power on (up.sh --no-install)"
"$CLUSTER_DIR/up.sh" --no-install >"$LOG_DIR/reboot-$NODE.log" 2>&1 || {
	tail -n 20 "$LOG_DIR/reboot-$NODE.log" >&2
	die "up.sh failed (log $LOG_DIR/reboot-$NODE.log)"
}
log "$NODE: up; kubelet pid $(cat "$PID_DIR/$NODE-kubelet.pid")"
