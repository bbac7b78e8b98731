#!/usr/bin/env bash
# Shows what of firedrill's e2e cluster runs: its daemons, nodes and pods, and with
# --memory how much memory all of it holds.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LOG_TAG=status

usage() {
	cat <<EOF
usage: e2e/cluster/status.sh [--memory]

Lists the cluster's daemons (pid files in $PID_DIR), nodes and pods. --memory prints only
the resident memory (RSS) of the daemons, the containerd shims and the pods' processes.
EOF
}
MEM=0
case ${1:-} in
-h | --help) usage; exit 0 ;;
--memory) MEM=1 ;;
"") ;;
*) usage >&2; exit 2 ;;
esac

rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

declare -A group
total=0
for f in "$PID_DIR"/*.pid; do
	[[ -e $f ]] || continue
	name=$(basename "$f" .pid)
	pid=$(cat "$f")
	if pid_alive "$pid"; then
		kib=$(rss_kib "$pid")
		((MEM)) || printf '%-28s pid %-8s %6d MiB\n' "$name" "$pid" $((kib / 1024))
		comp=${name#fd-zone-?-}
		group[$comp]=$((${group[$comp]:-0} + kib))
		total=$((total + kib))
	else
		((MEM)) || printf '%-28s %s\n' "$name" "NOT RUNNING (pid $pid)"
	fi
done
# containerd shims (one per pod) and the pods' own processes (in the nodes' cgroups).
shims=0
pods=0
for p in /proc/[0-9]*; do
	p=${p#/proc/}
	cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
	[[ $cmd == *containerd-shim*"$RUN_DIR/"* ]] && shims=$((shims + $(rss_kib "$p")))
done
for n in $(node_names); do
	d=/sys/fs/cgroup/memory/$n
	[[ -d $d ]] || continue
	for p in $(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u); do
		pods=$((pods + $(rss_kib "$p")))
	done
done
total=$((total + shims + pods))
line=""
for k in "${!group[@]}"; do line+="$k $((group[$k] / 1024)) MiB, "; done
log "memory (RSS): ${line}shims $((shims / 1024)) MiB, pods $((pods / 1024)) MiB; total $((total / 1024)) MiB"
((MEM)) && exit 0

if [[ -f $KUBECONFIG_ADMIN ]] && kc get --raw /readyz >/dev/null 2>&1; then
	kc get nodes -o wide -L topology.kubernetes.io/zone
	kc get pods -A -o wide
fi
