#!/usr/bin/env bash
# N live Experiments at once on the e2e cluster, each holding a real fault, and what that
# costs: apply -> fault effective, end -> reverted, reconciles/s, the operator's memory and
# CPU, the API server's requests/s, throttling. Opt-in (not part of make test / e2e/run.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../cluster/common.sh
. "$ROOT/e2e/cluster/common.sh"
LOG_TAG=scale

usage() {
	cat <<EOF
usage: e2e/bench/experiments-at-scale.sh N [options]

Runs as root, on the e2e cluster (e2e/cluster), which is shared: hold its lock throughout,
  flock -o /tmp/firedrill-e2e.lock e2e/bench/experiments-at-scale.sh 200
(-o: the daemons of a cluster it brings up must not inherit the lock; with --keep they outlive it)

What it does, each step timed:
  1. e2e/cluster/build.sh, and e2e/cluster/up.sh unless a cluster answers already (then
     that one is used as it is; one this script brought up is taken down at the end)
  2. e2e/images.sh --profile PROFILE --only operator --only agent (tag "scale"), and firedrill
     alone from its chart as e2e/run.sh deploys it (e2e/deploy.sh up --firedrill-only),
     logging at info; operator and agents restarted on the new images
  3. target pods: pause containers (the nodes' own pause image, imagePullPolicy Never),
     --pods-per-namespace (10) to an opted-in namespace (firedrill.dev/chaos=enabled), each
     namespace on one zone. Pods = min(N, --max-pods); beyond that experiments share pods
     (ceil(N / pods) per pod): see operator/README.md, "Scale", for why
  4. N Experiments, each in its pod's namespace: a networkPartition of that one pod from
     the next zone (left: the pod by label; right: the zone), both ways, for --duration,
     with one HTTP probe of the operator's own /healthz every --interval (the window is
     the interval). Created 4 streams at a time as fast as the API server takes them
  5. waits until every one has Completed (or --timeout), sampling every 5 s the operator
     leader's and agents' RSS and CPU (from /proc) and the machine's MemAvailable
  6. prints the figures (below), deletes the Experiments, checks no Injection is left,
     deletes the namespaces
Figures: apply (creationTimestamp, whole seconds) -> fault effective (status.injectedAt,
the agents' latest appliedAt) p50/p99/max, and asked (injectRequestedAt) -> effective,
split at each Injection's creation (a watch of the Injections during the run) into the
operator's share and the agents';
most held at once; revert asked -> reverted p50/p99/max; verdicts; reconciles and
reconciles/s and failures (the operator's /metrics); operator RSS (highest sample, and
VmHWM) and CPU; agents' RSS and CPU; kube-apiserver requests/s (apiserver_request_total
delta), 429s, and throttling in the operator's log (kube-rs has no client-side limiter);
MemAvailable before pods, with pods, lowest during the run.

Options:
  --interval SECONDS      hypothesis interval and window (default 5)
  --duration SECONDS      each fault's duration (default 120 + N/10: all N are held at once)
  --max-pods P            at most this many target pods (default 240: 80 a node, under the
                          kubelets' maxPods 110 with room for the system's pods)
  --pods-per-namespace P  (default 10; at least 3, or one pod is over the 50 % blast radius)
  --timeout SECONDS       give up waiting for completion (default duration + 600)
  --profile release|dev   the cargo profile of the operator's and agents' images (default
                          dev, as e2e/run.sh builds them; release is what ships, and the
                          one to read the operator's memory from: a dev build's resident
                          set carries more of its own text)
  --no-deploy             use firedrill as deployed (no images, no helm)
  --keep                  leave the target namespaces and pods (a later run with as many
                          pods reuses them), and a cluster this script brought up
  --out DIR               keep the raw data there (default /var/tmp/fd-scale-N-<time>)

Environment: AGENT_LOG, the agents' RUST_LOG (default info; "info,firedrill_agent::run=debug"
adds a line per pass and per intake of watch events).
EOF
}

N=
INTERVAL=5
DURATION=
MAX_PODS=240
PPN=10
TIMEOUT=
DEPLOY=1
PROFILE=dev
KEEP=0
OUT=
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--interval) INTERVAL=$2; shift ;;
	--duration) DURATION=$2; shift ;;
	--max-pods) MAX_PODS=$2; shift ;;
	--pods-per-namespace) PPN=$2; shift ;;
	--timeout) TIMEOUT=$2; shift ;;
	--profile) PROFILE=$2; shift ;;
	--no-deploy) DEPLOY=0 ;;
	--keep) KEEP=1 ;;
	--out) OUT=$2; shift ;;
	-*) usage >&2; die "unknown option $1" ;;
	*) [[ -z $N ]] || die "one N, not '$N' and '$1'"; N=$1 ;;
	esac
	shift
done
isnum() { [[ $1 =~ ^[0-9]+$ ]] && (($1 > 0)); }
[[ -n $N ]] || { usage >&2; exit 2; }
for v in N INTERVAL MAX_PODS PPN; do isnum "${!v}" || die "$v must be a whole number > 0, not '${!v}'"; done
((PPN >= 3)) || die "--pods-per-namespace must be at least 3: one pod of fewer is over the default 50 % blast radius"
DURATION=${DURATION:-$((120 + N / 10))}
TIMEOUT=${TIMEOUT:-$((DURATION + 600))}
isnum "$DURATION" && isnum "$TIMEOUT" || die "--duration and --timeout are whole seconds"
((EUID == 0)) || die "run as root (the cluster's /proc and daemons are root's)"
OUT=${OUT:-/var/tmp/fd-scale-$N-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
export KUBECONFIG=$KUBECONFIG_ADMIN
FD_NS=firedrill-system
PART_OF=firedrill-scale-bench
TAG=scale
read -ra ZONE_LIST <<<"$ZONES"

mem_available() { awk '/^MemAvailable:/{printf "%d", $2 / 1024}' /proc/meminfo; }
step() { log "$*"; }

# 1. The cluster.
brought_up=0
"$ROOT/e2e/cluster/build.sh" >/dev/null
if ! kc get --raw /readyz >/dev/null 2>&1; then
	step "no cluster answers: up.sh"
	"$ROOT/e2e/cluster/up.sh"
	brought_up=1
fi

cleanup() {
	local rc=$? left
	kill "${sampler:-}" "${injection_watch:-}" 2>/dev/null || true
	step "cleanup: the Experiments (their finalizers wait for the reverts)"
	# One kubectl per namespace at once: one kubectl deleting 1,000 took over 300 s.
	local ns deadline=$(($(date +%s) + 600))
	for ns in $(kc get namespace -l "app.kubernetes.io/part-of=$PART_OF" -o jsonpath='{.items[*].metadata.name}'); do
		kc -n "$ns" delete experiments.firedrill.dev --all --wait=false >/dev/null 2>&1 &
	done
	wait
	until (($(kc get experiments.firedrill.dev -A -l "app.kubernetes.io/part-of=$PART_OF" -o name | wc -l) == 0)); do
		(($(date +%s) < deadline)) || { step "ERROR: Experiments left after 600 s"; rc=1; break; }
		sleep 5
	done
	left=$(kc -n "$FD_NS" get injections.firedrill.dev -o name 2>/dev/null | wc -l)
	((left == 0)) || { step "ERROR: $left Injection(s) left in $FD_NS"; rc=1; }
	if ((KEEP == 0)); then
		step "cleanup: the target namespaces"
		kc delete namespace -l "app.kubernetes.io/part-of=$PART_OF" --wait=true --timeout=600s >/dev/null 2>&1 || rc=1
		if ((brought_up)); then
			step "down (this script brought the cluster up)"
			"$ROOT/e2e/cluster/down.sh" || rc=1
		fi
	fi
	step "raw data in $OUT (exit $rc)"
	exit "$rc"
}
trap cleanup EXIT

# 2. firedrill, as e2e/run.sh deploys it (firedrill alone).
if ((DEPLOY)); then
	step "images ($PROFILE build): operator, agent"
	"$ROOT/e2e/images.sh" --profile "$PROFILE" --tag "$TAG" --only operator --only agent
	cat >"$OUT/values.yaml" <<EOF
# The e2e values log every reconciliation at debug: at scale that is the logging's cost,
# not the operator's.
operator: {logLevel: info}
agent: {logLevel: "${AGENT_LOG:-info}"}
EOF
	step "deploy firedrill (e2e/deploy.sh up --firedrill-only)"
	"$ROOT/e2e/deploy.sh" up --firedrill-only --tag "$TAG" --values "$OUT/values.yaml"
	# The same tag again does not roll the pods: restart them on the images just imported.
	kc -n "$FD_NS" rollout restart deploy/firedrill-operator ds/firedrill-agent >/dev/null
	"$ROOT/e2e/deploy.sh" status --firedrill-only >/dev/null
fi
kc get crd experiments.firedrill.dev >/dev/null 2>&1 || die "firedrill is not deployed (drop --no-deploy)"

# 3. Target pods.
free=$(kc get nodes -o json | python3 -c '
import json, sys
print(sum(int(n["status"]["allocatable"]["pods"]) for n in json.load(sys.stdin)["items"]
          if "node-role.kubernetes.io/control-plane" not in n["metadata"].get("labels", {})))')
# Pods of others (this benchmark's own, kept by --keep, are made again or reused).
used=$(kc get pods -A --field-selector=status.phase!=Succeeded,status.phase!=Failed \
	-l "app.kubernetes.io/part-of!=$PART_OF" -o name | wc -l)
PODS=$((N < MAX_PODS ? N : MAX_PODS))
PER_POD=$(((N + PODS - 1) / PODS))
PODS=$(((N + PER_POD - 1) / PER_POD))
# One pod of a namespace of fewer than three is over the default 50 % blast radius.
PODS=$((PODS < 3 ? 3 : PODS))
((PODS + used <= free - 3 * 10)) || die "$PODS pods do not fit: the nodes take $free, $used run (lower --max-pods)"
NAMESPACES=$(((PODS + PPN - 1) / PPN))
ns_name() { printf 'fd-scale-%03d' "$1"; }
step "N=$N: $PODS pause pods ($PER_POD experiment(s) each) in $NAMESPACES namespaces, duration ${DURATION}s, interval ${INTERVAL}s"
mem_before=$(mem_available)
"$ROOT/e2e/cluster/status.sh" --memory | tee "$OUT/memory-before.txt"
t_pods=$(date +%s)
{
	for ((i = 0; i < NAMESPACES; i++)); do
		z=${ZONE_LIST[$((i % ${#ZONE_LIST[@]}))]}
		cat <<EOF
---
apiVersion: v1
kind: Namespace
metadata:
  name: $(ns_name "$i")
  labels: {firedrill.dev/chaos: enabled, app.kubernetes.io/part-of: $PART_OF, firedrill.dev/scale-zone: $z}
EOF
	done
} >"$OUT/namespaces.yaml"
{
	for ((p = 0; p < PODS; p++)); do
		i=$((p % NAMESPACES))
		z=${ZONE_LIST[$((i % ${#ZONE_LIST[@]}))]}
		cat <<EOF
---
apiVersion: v1
kind: Pod
metadata:
  name: t-$p
  namespace: $(ns_name "$i")
  labels: {firedrill.dev/scale-pod: t-$p, app.kubernetes.io/part-of: $PART_OF}
spec:
  nodeSelector: {topology.kubernetes.io/zone: $z}
  terminationGracePeriodSeconds: 0
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
    - name: pause
      image: $PAUSE_IMAGE
      imagePullPolicy: Never
      resources: {requests: {cpu: 1m, memory: 1Mi}}
EOF
	done
} >"$OUT/pods.yaml"
kc apply -f "$OUT/namespaces.yaml" >/dev/null
kc apply -f "$OUT/pods.yaml" >/dev/null
running() { kc get pods -A -l "app.kubernetes.io/part-of=$PART_OF" --field-selector=status.phase=Running -o name | wc -l; }
deadline=$(($(date +%s) + 900))
while (($(running) < PODS)); do
	(($(date +%s) < deadline)) || die "pods not all Running within 900 s ($(running) of $PODS)"
	sleep 5
done
step "$PODS pods Running in $(($(date +%s) - t_pods)) s"
mem_pods=$(mem_available)
"$ROOT/e2e/cluster/status.sh" --memory | tee "$OUT/memory-pods.txt"

# 4. Snapshots, the sampler, the Experiments.
leader=$(kc -n "$FD_NS" get lease firedrill-operator -o jsonpath='{.spec.holderIdentity}')
[[ -n $leader ]] || die "no operator leader"
# A pod's main process: the one in its cgroup (cgroupfs: .../pod<uid>/...) named NAME.
pod_pid() {
	local ns=$1 pod=$2 name=$3 uid p
	uid=$(kc -n "$ns" get pod "$pod" -o jsonpath='{.metadata.uid}')
	for p in /proc/[0-9]*; do
		[[ $(cat "$p/comm" 2>/dev/null) == "$name" ]] || continue
		grep -q "pod$uid" "$p/cgroup" 2>/dev/null && { echo "${p#/proc/}"; return 0; }
	done
	return 1
}
op_pid=$(pod_pid "$FD_NS" "$leader" firedrill-opera) || die "cannot find the process of the operator leader $leader"
agent_pids=()
for pod in $(kc -n "$FD_NS" get pods -l app.kubernetes.io/name=firedrill-agent -o jsonpath='{.items[*].metadata.name}'); do
	pid=$(pod_pid "$FD_NS" "$pod" firedrill-agent) || die "cannot find the agent process of $pod"
	agent_pids+=("$pid")
done
apiserver_pid=$(cat "$PID_DIR/kube-apiserver.pid")
step "operator leader $leader (pid $op_pid), agents ${agent_pids[*]}, kube-apiserver $apiserver_pid"
operator_metrics() { kc get --raw "/api/v1/namespaces/$FD_NS/pods/$leader:8080/proxy/metrics"; }
snapshot() {
	operator_metrics >"$OUT/operator-metrics-$1.txt"
	kc get --raw /metrics >"$OUT/apiserver-metrics-$1.txt"
	date +%s.%N >"$OUT/time-$1.txt"
}
# Every 5 s: time, MemAvailable, then "pid utime+stime(ticks) rss(kB)" of the operator
# leader, the agents and the API server.
sample() {
	local p
	printf '%s %s' "$(date +%s.%N)" "$(mem_available)"
	for p in "$op_pid" "${agent_pids[@]}" "$apiserver_pid"; do
		printf ' %s %s %s' "$p" "$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)" \
			"$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)"
	done
	echo
}
(while :; do sample; sleep 5; done) >"$OUT/samples.txt" &
sampler=$!

{
	for ((e = 0; e < N; e++)); do
		p=$((e % PODS))
		i=$((p % NAMESPACES))
		z=${ZONE_LIST[$((i % ${#ZONE_LIST[@]}))]}
		other=${ZONE_LIST[$(((i + 1) % ${#ZONE_LIST[@]}))]}
		cat <<EOF
---
apiVersion: firedrill.dev/v1alpha1
kind: Experiment
metadata:
  name: e-$e
  namespace: $(ns_name "$i")
  labels: {app.kubernetes.io/part-of: $PART_OF}
spec:
  description: scale benchmark, pod t-$p ($z) cut off from $other
  target:
    namespaces: [$(ns_name "$i")]
  fault:
    networkPartition:
      left: {selector: {matchLabels: {firedrill.dev/scale-pod: t-$p}}}
      right: {zones: [$other]}
      direction: Both
  duration: ${DURATION}s
  hypothesis:
    interval: ${INTERVAL}s
    window: ${INTERVAL}s
    probes:
      - name: operator-alive
        http: {url: "http://127.0.0.1:8080/healthz"}
  recoveryDeadline: 2m
EOF
	done
} >"$OUT/experiments.yaml"
# Four streams, each a quarter of the documents.
python3 - "$OUT/experiments.yaml" <<'EOF'
import sys
docs = [d for d in open(sys.argv[1]).read().split("---\n") if d.strip()]
for k in range(4):
    with open(f"{sys.argv[1]}.{k}", "w") as f:
        f.write("---\n".join([""] + docs[k::4]))
EOF
snapshot before
# Every Injection as the watch shows it: when the operator created it (creationTimestamp)
# and when its agent applied it (status.appliedAt) split "asked -> effective" between them.
# The API server may end a watch (kubectl then exits): start it again at once; a new one
# lists everything again, which the figures take as they come.
(
	trap 'kill "$watching" 2>/dev/null; exit 0' TERM
	while :; do
		"$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" -n "$FD_NS" get injections.firedrill.dev \
			--watch --output-watch-events -o json 2>>"$OUT/injection-watch.err" &
		watching=$!
		wait "$watching" || true
		echo "watch ended at $(date +%s.%N), started again" >>"$OUT/injection-watch.err"
		sleep 0.2
	done
) >"$OUT/injection-events.json" &
injection_watch=$!
step "creating $N Experiments"
t_apply=$(date +%s.%N)
pids=()
for k in 0 1 2 3; do
	kc create -f "$OUT/experiments.yaml.$k" >/dev/null &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || die "creating the Experiments failed"; done
t_applied=$(date +%s.%N)
step "$N Experiments created in $(python3 -c "print(f'{$t_applied - $t_apply:.1f}')") s"

# 5. Until all are Completed.
deadline=$(($(date +%s) + TIMEOUT))
phases() {
	kc get experiments.firedrill.dev -A -l "app.kubernetes.io/part-of=$PART_OF" \
		-o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | sort | uniq -c | awk '{printf "%s=%s ", $2 == "" ? "new" : $2, $1}'
}
while :; do
	line=$(phases)
	step "$line"
	[[ $line =~ ^Completed=$N\ $ ]] && break
	if (($(date +%s) >= deadline)); then
		step "WARNING: not all Completed within ${TIMEOUT}s; figures are of what got there"
		break
	fi
	sleep 10
done
snapshot after
kill "$sampler" "$injection_watch" 2>/dev/null || true
wait "$sampler" "$injection_watch" 2>/dev/null || true
# The loop may have been killed mid-line: end that line before the last sample.
[[ -z $(tail -c 1 "$OUT/samples.txt") ]] || echo >>"$OUT/samples.txt"
sample >>"$OUT/samples.txt"
for p in "$op_pid" "${agent_pids[@]}"; do grep -E '^(VmHWM|VmRSS)' "/proc/$p/status" | tr -s ' \t' ' ' | sed "s/^/$p /"; done >"$OUT/hwm.txt"
# Where the operator's resident memory is (heap and anonymous maps against the binary).
cat "/proc/$op_pid/smaps_rollup" >"$OUT/operator-smaps-rollup.txt" 2>/dev/null || true
# Each agent's log, without colours: its "apply batch done" lines time the agents' share.
for pod in $(kc -n "$FD_NS" get pods -l app.kubernetes.io/name=firedrill-agent -o jsonpath='{.items[*].metadata.name}'); do
	kc -n "$FD_NS" logs "$pod" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >"$OUT/agent-$pod.log" || true
done
kc get experiments.firedrill.dev -A -l "app.kubernetes.io/part-of=$PART_OF" -o json >"$OUT/experiments.json"
kc -n "$FD_NS" logs "$leader" >"$OUT/operator.log" 2>&1 || true

# 6. Figures.
python3 - "$OUT" "$N" "$PODS" "$t_apply" "$t_applied" "$mem_before" "$mem_pods" "$(getconf CLK_TCK)" <<'EOF' | tee "$OUT/figures.txt"
import collections, json, math, re, sys
from datetime import datetime
out, n, pods, t_apply, t_applied, mem_before, mem_pods, hz = sys.argv[1:]
n, pods, t_apply, t_applied, hz = int(n), int(pods), float(t_apply), float(t_applied), int(hz)

def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() if s else None

def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]  # nearest rank

def dist(xs):
    return f"p50 {pct(xs, 50):.2f} s, p99 {pct(xs, 99):.2f} s, max {max(xs) if xs else float('nan'):.2f} s (of {len(xs)})"

items = json.load(open(f"{out}/experiments.json"))["items"]
apply_eff, apply_ask, ask_eff, rev, held, verdicts = [], [], [], [], [], {}
# How long each fault stayed past its duration (revertedAt - injectedAt - spec.duration), and
# how many the nodes' own timers ended before the operator asked (no revertRequestedAt, or a
# later one): "revert asked -> reverted" leaves those out or counts them negative.
overrun, ended_first = [], 0
def seconds_of(d):
    return sum(float(v) * {"h": 3600, "m": 60, "s": 1}[u] for v, u in re.findall(r"([0-9.]+)([hms])", d or ""))
for e in items:
    s = e.get("status", {})
    created = ts(e["metadata"]["creationTimestamp"])
    inj, asked = ts(s.get("injectedAt")), ts(s.get("injectRequestedAt"))
    rq, rd = ts(s.get("revertRequestedAt")), ts(s.get("revertedAt"))
    if asked:
        apply_ask.append(asked - created)
    if inj:
        apply_eff.append(inj - created)
        if asked:
            ask_eff.append(inj - asked)
        held.append((inj, rq or rd or float("inf")))
    if rq and rd:
        rev.append(rd - rq)
    if inj and rd:
        overrun.append(rd - inj - seconds_of(e["spec"].get("duration")))
    if rd and (not rq or rd < rq):
        ended_first += 1
    v = s.get("verdict", "none")
    verdicts[v] = verdicts.get(v, 0) + 1
# The Injections: first creation and first appliedAt seen per UID, and their Experiment's
# asked time (injectRequestedAt): the operator's share and the agents' share of the wait.
asked_of = {f'{e["metadata"]["namespace"]}/{e["metadata"]["name"]}': ts(e.get("status", {}).get("injectRequestedAt")) for e in items}
injections = {}
text, pos, decoder = open(f"{out}/injection-events.json").read(), 0, json.JSONDecoder()
while True:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text):
        break
    try:
        event, pos = decoder.raw_decode(text, pos)
    except ValueError:
        break  # the watch was killed mid-object
    obj = event.get("object", {})
    uid = obj.get("metadata", {}).get("uid")
    if not uid:
        continue
    seen = injections.setdefault(uid, {"experiment": obj.get("spec", {}).get("experiment"), "created": ts(obj["metadata"].get("creationTimestamp")), "applied": None})
    applied = ts(obj.get("status", {}).get("appliedAt"))
    if applied and seen["applied"] is None:
        seen["applied"] = applied
ask_create, create_apply = [], []
for seen in injections.values():
    asked = asked_of.get(seen["experiment"])
    if asked and seen["created"]:
        ask_create.append(seen["created"] - asked)
    if seen["created"] and seen["applied"]:
        create_apply.append(seen["applied"] - seen["created"])
events = sorted([(a, 1) for a, _ in held] + [(b, -1) for _, b in held])
most = cur = 0
for _, d in events:
    cur += d
    most = max(most, cur)

def metrics(path):
    m = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        try:
            m[name] = float(value)
        except ValueError:
            pass
    return m

def total(m, prefix, where=""):
    return sum(v for k, v in m.items() if k.startswith(prefix) and where in k)

ob, oa = metrics(f"{out}/operator-metrics-before.txt"), metrics(f"{out}/operator-metrics-after.txt")
ab, aa = metrics(f"{out}/apiserver-metrics-before.txt"), metrics(f"{out}/apiserver-metrics-after.txt")
tb, ta = float(open(f"{out}/time-before.txt").read()), float(open(f"{out}/time-after.txt").read())
span = ta - tb
rec = total(oa, "firedrill_operator_reconciles_total") - total(ob, "firedrill_operator_reconciles_total")
echoes = total(oa, "firedrill_operator_reconcile_echoes_skipped_total") - total(ob, "firedrill_operator_reconcile_echoes_skipped_total")
fails = {}
for k, v in oa.items():
    if k.startswith("firedrill_operator_reconcile_failures_total"):
        d = v - ob.get(k, 0)
        if d:
            fails[re.sub(r".*category=\"([^\"]*)\".*", r"\1", k)] = int(d)
req = total(aa, "apiserver_request_total{") - total(ab, "apiserver_request_total{")
r429 = total(aa, "apiserver_request_total{", 'code="429"') - total(ab, "apiserver_request_total{", 'code="429"')
by_verb = {}
for k, v in aa.items():
    if k.startswith("apiserver_request_total{"):
        verb = re.search(r'verb="([^"]*)"', k).group(1)
        by_verb[verb] = by_verb.get(verb, 0) + v - ab.get(k, 0)

# A line torn by the sampler's end (killed while writing it) has another width than the rest.
samples = [l.split() for l in open(f"{out}/samples.txt") if l.strip()]
width = collections.Counter(len(s) for s in samples).most_common(1)[0][0]
samples = [s for s in samples if len(s) == width]
def proc(col):
    """(highest RSS MiB, CPU seconds, mean CPU %) of the process in column group col."""
    rows = [(float(s[0]), int(s[3 + 3 * col]), int(s[4 + 3 * col])) for s in samples if len(s) > 4 + 3 * col]
    if len(rows) < 2:
        return (0, 0, 0)
    cpu = (rows[-1][1] - rows[0][1]) / hz
    return (max(r[2] for r in rows) / 1024, cpu, 100 * cpu / (rows[-1][0] - rows[0][0]))
groups = (len(samples[0]) - 2) // 3
op = proc(0)
agents = [proc(c) for c in range(1, groups - 1)]
api = proc(groups - 1)
hwm = {}
for line in open(f"{out}/hwm.txt"):
    pid, key, kb, _ = line.split()
    hwm.setdefault(pid, {})[key.rstrip(":")] = int(kb) / 1024
op_hwm = next(iter(hwm.values()), {}).get("VmHWM", 0)
mem_low = min(int(s[1]) for s in samples)
logs = open(f"{out}/operator.log", errors="replace").read()
throttled = len(re.findall(r"(?i)throttl|too many requests|code: 429", logs))

print(f"== {n} Experiments on {pods} pods, measured over {span:.0f} s ==")
print(f"created in                 {t_applied - t_apply:.1f} s ({n / (t_applied - t_apply):.0f}/s, 4 streams)")
print(f"apply -> fault effective   {dist(apply_eff)}  (apply: creationTimestamp, whole seconds)")
print(f"apply -> fault asked for   {dist(apply_ask)}  (the steady-state window included)")
print(f"asked -> fault effective   {dist(ask_eff)}")
# Effective before it was asked for: the status was stepped again from a stale copy and
# entered Injecting a second time (it must be 0; the operator's status write is conditional).
print(f"  effective before asked  {sum(1 for x in ask_eff if x < 0)} of {len(ask_eff)}  (a status rewound from a stale copy)")
print(f"  asked -> Injection made  {dist(ask_create)}  (the operator; creationTimestamp, whole seconds)")
print(f"  Injection made -> applied {dist(create_apply)}  (the agents: watch, pass, apply)")
print(f"effective within 10 s      {sum(1 for x in apply_eff if x <= 10)} of {n}")
print(f"held at once, most         {most} of {n}")
print(f"revert asked -> reverted   {dist(rev)}")
print(f"  ended before asked       {ended_first} of {n}  (the nodes' own timers, at the duration, before the operator asked)")
print(f"held past the duration     {dist(overrun)}  (revertedAt - injectedAt - spec.duration)")
print(f"verdicts                   {', '.join(f'{k} {v}' for k, v in sorted(verdicts.items()))}")
print(f"reconciles                 {rec:.0f} ({rec / max(n, 1):.1f} each), {rec / span:.1f}/s over the run, {echoes:.0f} of them echoes (no API call); failures {fails or 'none'}")
held_back = total(oa, "firedrill_operator_status_writes_held_back_total") - total(ob, "firedrill_operator_status_writes_held_back_total")
stale = total(oa, "firedrill_operator_reconcile_stale_copies_skipped_total") - total(ob, "firedrill_operator_reconcile_stale_copies_skipped_total")
print(f"  status writes held back  {held_back:.0f} (routine samples); stale copies waited for the watch: {stale:.0f}")
print(f"operator leader            RSS highest {op[0]:.1f} MiB, VmHWM {op_hwm:.1f} MiB; CPU {op[1]:.1f} s ({op[2]:.1f} % of a core)")
print(f"agents ({len(agents)})                 RSS highest {', '.join(f'{a[0]:.1f}' for a in agents)} MiB; CPU {', '.join(f'{a[1]:.1f}' for a in agents)} s ({', '.join(f'{a[2]:.1f}' for a in agents)} %)")
print(f"kube-apiserver             {req:.0f} requests, {req / span:.1f}/s ({', '.join(f'{k} {v:.0f}' for k, v in sorted(by_verb.items(), key=lambda kv: -kv[1]) if v)}); RSS highest {api[0]:.0f} MiB, CPU {api[2]:.0f} % of a core")
print(f"throttling                 429s from the API server: {r429:.0f}; throttling in the operator's log: {throttled} lines (kube-rs has no client-side rate limiter)")
# The agents' apply batches (agent/src/run.rs, BatchClock): how many Injections a batch
# carried, and where its time went.
import glob
batches = []
for path in glob.glob(f"{out}/agent-*.log"):
    for line in open(path, errors="replace"):
        if "apply batch done" in line:
            f = dict(re.findall(r"(\w+)=(\d+)", line))
            batches.append({k: int(v) for k, v in f.items()})
if batches:
    sizes = [b.get("applied", 0) for b in batches]
    phase = {k: sum(b.get(f"{k}_ms", 0) for b in batches) / 1000 for k in ("labels", "finalizers", "faults", "statuses")}
    busy = sum(phase.values())
    print(f"agents' apply batches      {len(batches)}, Injections each p50 {pct(sizes, 50)}, max {max(sizes)}; "
          f"{busy:.1f} s in them: {', '.join(f'{k} {v:.1f} s' for k, v in phase.items())}")
smaps = {}
try:
    for line in open(f"{out}/operator-smaps-rollup.txt"):
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            smaps[parts[0].rstrip(":")] = int(parts[1]) / 1024
except OSError:
    pass
if smaps:
    print(f"operator memory at the end RSS {smaps.get('Rss', 0):.1f} MiB: anonymous {smaps.get('Anonymous', 0):.1f}, "
          f"file-backed {smaps.get('Rss', 0) - smaps.get('Anonymous', 0):.1f} MiB")
print(f"MemAvailable               {mem_before} MiB before the pods, {mem_pods} MiB with them, lowest {mem_low} MiB during the run")
EOF
