#!/usr/bin/env bash
# What one firedrill agent costs (issue 17, item 3): the real release binary against a
# throwaway API server of its own, idle and then holding N injections. Run with --help.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/agent-cost.sh [--idle SECONDS] [--busy SECONDS] [--injections N]
                             [--agent PATH] [--perf] [--keep]

Measures the resident memory and CPU of one firedrill-agent (the release build) on this
machine, in two phases, and prints:
  idle:  RSS, peak RSS, CPU % (its own; with its reaped children, i.e. nft runs)
  busy:  the same while it holds N Injections (each a network cut of one stand-in pod)

It needs root and nothing of a cluster: it starts its own etcd and kube-apiserver on
loopback (etcd 127.0.0.1:22379/22380, API 127.0.0.1:16443; data under /tmp), installs the
Injection CRD, makes up a Node (no kubelet), and runs the agent for it. The stand-in pods
are network namespaces `fdcost-<pid>-<n>`, each with a `sleep` placed in a cgroup named
like a pod's (cgroup v1 pids hierarchy), as the agent's root tests make them. Everything is
removed on exit, even after Ctrl-C.

Phases: the agent starts and settles (15 s), is sampled idle for --idle seconds; then the
N Injections are created, the script waits until the agent reports every one Applied,
lets it settle (15 s), and samples it for --busy seconds. RSS is read from
/proc/PID/status (VmRSS every 5 s; the figure is the last, the peak the highest seen) and
CPU from /proc/PID/stat (utime+stime, and cutime+cstime for children it waited for).

Options:
  --idle SECONDS     idle sample (default 600: the report's figure; e.g. 120 for a quick run)
  --busy SECONDS     sample while holding the injections (default 300; 0: idle only)
  --injections N     how many Injections to hold (default 100)
  --agent PATH       the agent binary (default: cargo build --release -p firedrill-agent,
                     then target/release/firedrill-agent of this repository). The image's
                     agent is the size-optimized build: cargo build --profile agent
                     -p firedrill-agent, then --agent target/agent/firedrill-agent
  --perf             record the busy phase with `perf record` and print the top entries
                     (perf report --no-children --sort dso,symbol)
  --keep             leave the work directory (logs, journal, perf.data) in place
  -h, --help         this help

Environment: FIREDRILL_ETCD (default /var/cache/firedrill/etcd-v3.6.6/bin/etcd),
FIREDRILL_APISERVER (default /var/cache/firedrill/k8s-v1.35.4/bin/kube-apiserver), KUBECTL.
Exit status: 0 when both phases were measured, 1 when something failed, 2 on usage errors.
EOF
}

die() {
  echo "agent-cost: $*" >&2
  exit 2
}
say() { echo "agent-cost: $*" >&2; }
fail() {
  echo "agent-cost: $*" >&2
  exit 1
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
idle=600
busy=300
count=100
agent=""
perf=0
keep=0
settle=15
while (($#)); do
  case $1 in
  -h | --help) usage; exit 0 ;;
  --idle) [[ ${2:-} =~ ^[0-9]+$ ]] || die "--idle needs seconds"; idle=$2; shift ;;
  --busy) [[ ${2:-} =~ ^[0-9]+$ ]] || die "--busy needs seconds"; busy=$2; shift ;;
  --injections) [[ ${2:-} =~ ^[0-9]+$ ]] || die "--injections needs a number"; count=$2; shift ;;
  --agent) [[ -n ${2:-} ]] || die "--agent needs a path"; agent=$2; shift ;;
  --perf) perf=1 ;;
  --keep) keep=1 ;;
  *) usage >&2; die "unknown argument $1" ;;
  esac
  shift
done
[[ $(id -u) == 0 ]] || die "run as root: the stand-in pods are network namespaces and cgroups"

etcd_bin=${FIREDRILL_ETCD:-/var/cache/firedrill/etcd-v3.6.6/bin/etcd}
apiserver_bin=${FIREDRILL_APISERVER:-/var/cache/firedrill/k8s-v1.35.4/bin/kube-apiserver}
kubectl_bin=${KUBECTL:-$(command -v kubectl || echo /var/cache/firedrill/k8s-v1.35.4/bin/kubectl)}
for b in "$etcd_bin" "$apiserver_bin" "$kubectl_bin"; do
  [[ -x $b ]] || die "$b is missing (build the e2e cluster's binaries: e2e/cluster/build.sh)"
done
for t in openssl ip; do command -v "$t" >/dev/null || die "$t is missing"; done
cgroot=/sys/fs/cgroup/pids
[[ -d $cgroot ]] || die "no cgroup v1 pids hierarchy at $cgroot"
((perf == 0)) || command -v perf >/dev/null || die "--perf needs perf (apt-get install linux-perf)"

if [[ -z $agent ]]; then
  say "building the agent (release)"
  (cd "$repo" && cargo build --release -q -p firedrill-agent) || fail "the build failed"
  agent=$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/firedrill-agent
fi
[[ -x $agent ]] || die "no agent binary at $agent"

work=$(mktemp -d /tmp/fd-agent-cost.XXXXXX)
tag=fdcost-$$
node=$tag-node
ns=firedrill-cost
pids=()
netns=()
cleanup() {
  set +e
  if [[ -n ${agent_pid:-} ]] && kill -0 "$agent_pid" 2>/dev/null; then
    # SIGTERM: the agent reverts everything it holds.
    kill -TERM "$agent_pid"
    wait "$agent_pid" 2>/dev/null
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  for n in "${netns[@]}"; do ip netns del "$n" 2>/dev/null; done
  if [[ -d $cgroot/$tag ]]; then
    find "$cgroot/$tag" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
    rmdir "$cgroot/$tag" 2>/dev/null
  fi
  if ((keep)); then say "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# --- A throwaway API server: etcd, a self-signed serving cert, one static admin token. ---
say "starting etcd and kube-apiserver (work directory $work)"
# A CA and a serving certificate it signs: rustls refuses a CA certificate as the server's.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=fdcost-ca \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=fdcost-apiserver \
  -keyout "$work/serving.key" -out "$work/serving.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n' \
  >"$work/serving.ext"
openssl x509 -req -in "$work/serving.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
  -CAcreateserial -days 2 -extfile "$work/serving.ext" -out "$work/serving.crt" 2>/dev/null
openssl genrsa -out "$work/sa.key" 2048 2>/dev/null
openssl rsa -in "$work/sa.key" -pubout -out "$work/sa.pub" 2>/dev/null
token=$(openssl rand -hex 16)
echo "$token,fdcost-admin,fdcost-admin,system:masters" >"$work/tokens.csv"
cat >"$work/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: fdcost
  cluster: {server: "https://127.0.0.1:16443", certificate-authority: "$work/ca.crt"}
users:
- name: admin
  user: {token: "$token"}
contexts:
- name: fdcost
  context: {cluster: fdcost, user: admin}
current-context: fdcost
EOF
export KUBECONFIG=$work/kubeconfig
kc() { "$kubectl_bin" --request-timeout=10s "$@"; }

"$etcd_bin" --name fdcost --data-dir "$work/etcd" \
  --listen-client-urls http://127.0.0.1:22379 --advertise-client-urls http://127.0.0.1:22379 \
  --listen-peer-urls http://127.0.0.1:22380 --initial-advertise-peer-urls http://127.0.0.1:22380 \
  --initial-cluster fdcost=http://127.0.0.1:22380 --log-level warn >"$work/etcd.log" 2>&1 &
pids+=($!)
"$apiserver_bin" --etcd-servers=http://127.0.0.1:22379 \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port=16443 \
  --service-cluster-ip-range=10.254.0.0/24 --endpoint-reconciler-type=none \
  --tls-cert-file="$work/serving.crt" --tls-private-key-file="$work/serving.key" \
  --token-auth-file="$work/tokens.csv" --authorization-mode=RBAC \
  --service-account-issuer=https://fdcost.invalid --service-account-key-file="$work/sa.pub" \
  --service-account-signing-key-file="$work/sa.key" --profiling=false \
  >"$work/apiserver.log" 2>&1 &
pids+=($!)
for _ in $(seq 120); do
  kc get --raw /readyz >/dev/null 2>&1 && break
  sleep 1
done
kc get --raw /readyz >/dev/null 2>&1 || fail "kube-apiserver not ready in 120 s (see $work/apiserver.log; --keep)"

kc apply -f "$repo/charts/firedrill/crds/injections.yaml" >/dev/null
kc wait --for condition=established --timeout=60s crd/injections.firedrill.dev >/dev/null
kc create namespace "$ns" >/dev/null
kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata: {name: $node}
spec: {unschedulable: true}
EOF

# --- The agent. ---
say "starting $agent for node $node"
NODE_NAME=$node POD_NAMESPACE=$ns FIREDRILL_JOURNAL_DIR=$work/journal \
  FIREDRILL_HEARTBEAT_FILE=$work/alive KUBELET_ROOT_DIR=$work/kubelet RUST_LOG=info \
  "$agent" >"$work/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 30); do
  [[ -e $work/alive ]] && break
  sleep 1
done
kill -0 "$agent_pid" 2>/dev/null || fail "the agent died: $(tail -5 "$work/agent.log")"

tck=$(getconf CLK_TCK)
# utime stime cutime cstime (clock ticks) of the agent.
ticks() {
  local stat
  stat=$(<"/proc/$agent_pid/stat")
  stat=${stat##*) }
  # Fields after ") " start at field 3: utime is 14, stime 15, cutime 16, cstime 17.
  awk '{print $12, $13, $14, $15}' <<<"$stat"
}
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$agent_pid/status"; }
# The resident set's parts: heap and stacks (anonymous), and the binary's and libraries'
# pages (file-backed).
rss_parts() { awk '/^RssAnon:/{a=$2} /^RssFile:/{f=$2} END{print a, f}' "/proc/$agent_pid/status"; }

# Samples the agent for $1 seconds; prints
# "rss_kib peak_kib own_pct with_children_pct anon_kib file_kib".
sample() {
  local seconds=$1 t0 t1 u0 s0 cu0 cs0 u1 s1 cu1 cs1 peak=0 rss end left
  read -r u0 s0 cu0 cs0 < <(ticks)
  t0=$(date +%s.%N)
  end=$(($(date +%s) + seconds))
  while (($(date +%s) < end)); do
    kill -0 "$agent_pid" 2>/dev/null || fail "the agent died: $(tail -5 "$work/agent.log")"
    rss=$(rss_kib)
    if ((rss > peak)); then peak=$rss; fi
    left=$((end - $(date +%s)))
    if ((left > 5)); then left=5; fi
    if ((left > 0)); then sleep "$left"; fi
  done
  read -r u1 s1 cu1 cs1 < <(ticks)
  t1=$(date +%s.%N)
  rss=$(rss_kib)
  if ((rss > peak)); then peak=$rss; fi
  awk -v own=$((u1 + s1 - u0 - s0)) -v kids=$((cu1 + cs1 - cu0 - cs0)) -v tck="$tck" \
    -v dt="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" -v rss="$rss" -v peak="$peak" \
    -v parts="$(rss_parts)" \
    'BEGIN{printf "%d %d %.2f %.2f %s\n", rss, peak, 100*own/tck/dt, 100*(own+kids)/tck/dt, parts}'
}

mib() { awk -v k="$1" 'BEGIN{printf "%.1f MiB", k/1024}'; }
report() {
  local phase=$1 seconds=$2 rss peak own all anon file
  read -r rss peak own all anon file <<<"$3"
  printf '%-5s %4ss: RSS %s (peak %s; heap and stacks %s, binary and libraries %s), CPU %s %% (with its nft children %s %%)\n' \
    "$phase:" "$seconds" "$(mib "$rss")" "$(mib "$peak")" "$(mib "$anon")" "$(mib "$file")" "$own" "$all"
}

say "settling ${settle}s, then idle for ${idle}s"
sleep "$settle"
# An agent that cannot reach the API server retries all the time: not idle.
if grep -q 'watch failed' "$work/agent.log"; then
  fail "the agent cannot watch the API server: $(grep -m1 'watch failed' "$work/agent.log")"
fi
idle_figures=$(sample "$idle")
# Where the resident memory is, mapping by mapping (kept with --keep).
cp "/proc/$agent_pid/smaps" "$work/smaps.idle"
report idle "$idle" "$idle_figures" >&2
if ((busy == 0)); then
  echo "agent: $agent"
  report idle "$idle" "$idle_figures"
  exit 0
fi

# --- N stand-in pods and one Injection each. ---
say "creating $count stand-in pods and Injections"
mkdir -p "$cgroot/$tag"
expires=$(date -u -d "+$((settle + busy + 600)) seconds" +%Y-%m-%dT%H:%M:%SZ)
manifest=$work/injections.yaml
: >"$manifest"
for i in $(seq 1 "$count"); do
  name=$tag-$i
  uid=$(printf '%08x-0000-4000-8000-%012x' $$ "$i")
  ip netns add "$name"
  netns+=("$name")
  ip -n "$name" link set lo up
  cg=$cgroot/$tag/pod$uid
  mkdir -p "$cg"
  # Into the pod's cgroup first, then into its namespace: the agent finds it by both.
  (
    echo "$BASHPID" >"$cg/cgroup.procs"
    exec ip netns exec "$name" sleep infinity
  ) </dev/null >/dev/null 2>&1 &
  pids+=($!)
  cat >>"$manifest" <<EOF
---
apiVersion: firedrill.dev/v1alpha1
kind: Injection
metadata:
  name: cost-$i
  namespace: $ns
  labels: {firedrill.dev/node: $node}
spec:
  nodeName: $node
  experiment: fdcost/cost-$i
  expiresAt: "$expires"
  action:
    network:
      pods: [{namespace: fdcost, name: $name, uid: "$uid"}]
      peers: ["10.253.$((i % 256)).0/24"]
EOF
done
# `ip netns exec` execs sleep only once it is in the namespace.
sleep 2
t_apply=$(date +%s.%N)
kc apply -f "$manifest" >/dev/null
applied=0
for _ in $(seq 300); do
  applied=$(kc get injections -n "$ns" -o jsonpath='{range .items[*]}{.status.state}{"\n"}{end}' |
    grep -c '^Applied$' || true)
  if ((applied >= count)); then break; fi
  sleep 1
done
((applied >= count)) || fail "only $applied of $count Injections were applied (see $work/agent.log; --keep)"
say "all $count applied in $(awk -v a="$t_apply" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s; settling ${settle}s, then holding for ${busy}s"
sleep "$settle"
if ((perf)); then
  perf record -q -g -F 499 -p "$agent_pid" -o "$work/perf.data" -- sleep "$busy" 2>/dev/null &
  perf_pid=$!
fi
busy_figures=$(sample "$busy")
cp "/proc/$agent_pid/smaps" "$work/smaps.busy"
if ((perf)); then
  wait "$perf_pid" || true
fi
lapses=$(kc get injections -n "$ns" -o jsonpath='{range .items[*]}{.status.lapses}{"\n"}{end}' |
  grep -c . || true)

echo "agent: $agent"
report idle "$idle" "$idle_figures"
report busy "$busy" "$busy_figures"
echo "       holding $count Injections (network cuts of one pod each); $lapses reported a lapse"
if ((perf)); then
  echo "perf (busy phase, top entries):"
  # Without its nft children (perf follows them): the agent's own threads, then the split.
  echo "  by process:"
  perf report -i "$work/perf.data" --no-children -g none --sort comm --stdio 2>/dev/null |
    grep -v -e '^#' -e '^$' | sed 's/ *$//' | head -5 || true
  echo "  the agent's own threads, top symbols:"
  perf report -i "$work/perf.data" --no-children -g none --comms firedrill-agent,firedrill-call \
    --percentage relative --sort dso,sym --percent-limit 2 --stdio 2>/dev/null |
    grep -v -e '^#' -e '^$' | sed 's/ *$//' | head -20 || true
  echo "  the agent's own threads, by system call (with what they call):"
  perf report -i "$work/perf.data" --children -g none --comms firedrill-agent,firedrill-call \
    --percentage relative --sort sym --stdio 2>/dev/null |
    grep -E '\[k\] (__x64_sys|__do_sys|ksys_)' | sed 's/ *$//' | head -8 || true
fi

say "deleting the Injections (the agent reverts them)"
kc delete injections -n "$ns" --all --wait=true --timeout=120s >/dev/null ||
  say "not every Injection was released in 120 s"
