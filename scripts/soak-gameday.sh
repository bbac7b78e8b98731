#!/usr/bin/env bash
# Soak: the default game day N times in a row in the lab, then optionally once per weakness
# (issue 15, item 6 "Proof at volume"). Run `scripts/soak-gameday.sh --help`.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/soak-gameday.sh N [--weaken NAME]... [--bin DIR] [--out DIR]

Runs `chaosctl game-day experiments/gameday-quarterly-dr.yaml` N times in a row in the lab
(needs root and the lab to itself; about five minutes each) and prints each game day's
per-experiment verdicts (from its JSON report), then
  game days: N, experiments: E, passed: P
(E is 4N for the quarterly game day; P counts experiments that passed).

With --weaken NAME (repeatable; `all` for every weakness) it then runs, with the lab deployed
with that weakness, the one step of the game day that README.md's table names for it, and
says whether it was caught (the step did not pass):
  stream-r1       quarterly game day, caught by disk-loss
  single-zone     quarterly game day, caught by zone-blackout
  single-monitor  quarterly game day, caught by ops-tool-outage
  no-fsync        experiments/gameday-site-power-loss.yaml, caught by site-power-loss
and ends with `weaknesses: W, caught: C` before the tally.

Options:
  --weaken NAME  stream-r1, single-zone, single-monitor, no-fsync, or all
  --bin DIR      directory with chaosctl, talk-server, talk-load, firedrill-powerloss
                 (default: target/release of this repository)
  --out DIR      where the game days' reports and logs go
                 (default: /tmp/soak-gameday.TIME)
  -h, --help     this help

Environment: FIREDRILL_LAB_DIR, TALK_NATS_SERVER (default: the pinned
/var/cache/firedrill/nats-server-v2.12.15/nats-server).
Exit status: 0 when every default game day passed and every weakness asked for was caught,
1 otherwise, 2 on usage errors.
EOF
}

die() {
  echo "soak-gameday: $*" >&2
  exit 2
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
declare -A catcher=(
  [stream-r1]=disk-loss
  [single-zone]=zone-blackout
  [single-monitor]=ops-tool-outage
  [no-fsync]=site-power-loss
)
declare -A weak_plan=(
  [stream-r1]=gameday-quarterly-dr.yaml
  [single-zone]=gameday-quarterly-dr.yaml
  [single-monitor]=gameday-quarterly-dr.yaml
  [no-fsync]=gameday-site-power-loss.yaml
)
n=""
bin=""
out=""
weaknesses=()
add_weakness() {
  local w=$1
  if [ "$w" = all ]; then
    weaknesses+=(stream-r1 single-zone single-monitor no-fsync)
  elif [ -n "${catcher[$w]:-}" ]; then
    weaknesses+=("$w")
  else
    die "--weaken: unknown weakness '$w' (stream-r1, single-zone, single-monitor, no-fsync, all)"
  fi
}
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --weaken) [ $# -ge 2 ] || die "--weaken needs a name"; add_weakness "$2"; shift 2 ;;
    --weaken=*) add_weakness "${1#*=}"; shift ;;
    --bin) [ $# -ge 2 ] || die "--bin needs a directory"; bin=$2; shift 2 ;;
    --bin=*) bin=${1#*=}; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$n" ] || die "one N only (see --help)"; n=$1; shift ;;
  esac
done
[ -n "$n" ] || { usage >&2; exit 2; }
[[ $n =~ ^[0-9]+$ ]] || die "N must be a non-negative integer, not '$n'"
[ "$n" -gt 0 ] || [ ${#weaknesses[@]} -gt 0 ] || die "N is 0 and no --weaken: nothing to run"
if [ "$(id -u)" -ne 0 ]; then
  echo "soak-gameday: must run as root: the lab is network namespaces, nftables rules and mounts (sudo $0 ...)" >&2
  exit 2
fi
bin_arg=${bin:-$repo/target/release}
bin=$(cd "$bin_arg" 2>/dev/null && pwd) || die "--bin $bin_arg: no such directory"
for prog in chaosctl talk-server talk-load firedrill-powerloss; do
  [ -x "$bin/$prog" ] || die "$bin/$prog is missing (cargo build --release --locked -p chaosctl -p talk -p firedrill-powerloss --bins)"
done
command -v jq >/dev/null || die "jq is missing (apt-get install jq)"
export TALK_NATS_SERVER=${TALK_NATS_SERVER:-/var/cache/firedrill/nats-server-v2.12.15/nats-server}
out=${out:-/tmp/soak-gameday.$(date +%Y%m%dT%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$repo"

# run_game_day NAME PLAN [chaosctl args...]: runs one game day into $out/NAME; sets $rc,
# $report (its JSON report, "" when there is none) and $line (its verdicts on one line).
rc=0
report=""
line=""
run_game_day() {
  local name=$1 plan=$2 started
  shift 2
  started=$SECONDS
  rc=0
  "$bin/chaosctl" game-day "$repo/experiments/$plan" --bin-dir "$bin" --output json \
    --report-dir "$out/$name" "$@" >"$out/$name.json" 2>"$out/$name.log" || rc=$?
  report=$out/$name.json
  if ! jq -e '.experiments' "$report" >/dev/null 2>&1; then
    report=""
    line="could not run (chaosctl exited $rc after $((SECONDS - started))s): $(grep -v '^\s*$' "$out/$name.log" | tail -n 1)"
    return 0
  fi
  line="$(jq -r '.verdict' "$report") in $((SECONDS - started))s (rc $rc): $(jq -r '
    [.experiments[] | .name + " " + .verdict
      + (if .verdict != "Passed" and .reason then " (" + .reason + ")" else "" end)]
    | join(", ")' "$report")"
}

planned=$(grep -c 'experimentRef:' "$repo/experiments/gameday-quarterly-dr.yaml" || true)
echo "soak-gameday: $n game day(s)${weaknesses[*]:+, then weakened: ${weaknesses[*]}}; binaries $bin; reports $out"
experiments=0
passed=0
failed_days=0
for ((i = 1; i <= n; i++)); do
  run_game_day "gameday-$i" gameday-quarterly-dr.yaml
  echo "game day $i/$n: $line"
  if [ -n "$report" ]; then
    experiments=$((experiments + $(jq '.experiments | length' "$report")))
    passed=$((passed + $(jq '[.experiments[] | select(.verdict == "Passed")] | length' "$report")))
    [ "$(jq -r '.verdict' "$report")" = Passed ] || failed_days=$((failed_days + 1))
  else
    experiments=$((experiments + planned))
    failed_days=$((failed_days + 1))
  fi
done

# The figures of every default game day, per experiment: how often it passed, and the
# spread (min / median / max) of each measured figure over the runs that have one. A figure
# that comes out the same in every run is worth a second look.
if [ "$n" -gt 0 ]; then
  echo "figures over $n game day(s), min / median / max (runs with the figure):"
  reports=()
  for ((i = 1; i <= n; i++)); do
    jq -e '.experiments' "$out/gameday-$i.json" >/dev/null 2>&1 && reports+=("$out/gameday-$i.json")
  done
  [ ${#reports[@]} -eq 0 ] || jq -rs '
    def spread: map(select(. != null)) | sort
      | if length == 0 then "-"
        else "\(.[0] * 10 | round / 10) / \(.[length / 2 | floor] * 10 | round / 10) / \(.[-1] * 10 | round / 10) s (\(length))"
        end;
    [.[].experiments[]] | group_by(.name)[]
    | "  \(.[0].name): passed \([.[] | select(.verdict == "Passed")] | length) of \(length);"
      + " impact \([.[].timeToImpactSeconds] | spread);"
      + " unhealthy \([.[] | [.slis[]?.unhealthySeconds] | max] | spread);"
      + " recover \([.[].timeToRecoverSeconds] | spread);"
      + " healed while held \([.[] | select(any(.slis[]?; .healedWhileHeld == true))] | length);"
      + " lost \([.[].messagesLost // 0] | add)"' "${reports[@]}"
fi

caught=0
declare -A tries=()
for w in "${weaknesses[@]}"; do
  # One report per run, also when a weakness is named more than once.
  tries[$w]=$((${tries[$w]:-0} + 1))
  name="weaken-$w"
  [ "${tries[$w]}" -eq 1 ] || name="weaken-$w-${tries[$w]}"
  expected=${catcher[$w]}
  # Only the step that should catch it: a weakened lab can make another step's plan invalid
  # (single-zone puts 7 of 10 pods in zone-a, past the partition's blast radius).
  run_game_day "$name" "${weak_plan[$w]}" --weaken "$w" --only "$expected"
  verdict=""
  if [ -n "$report" ]; then
    verdict=$(jq -r --arg e "$expected" '.experiments[] | select(.name == $e) | .verdict' "$report")
  fi
  if [ -n "$verdict" ] && [ "$verdict" != Passed ]; then
    caught=$((caught + 1))
    echo "weakness $w: caught by $expected ($verdict); $line"
  else
    echo "weakness $w: NOT caught ($expected: ${verdict:-no verdict}); $line"
  fi
done

[ ${#weaknesses[@]} -eq 0 ] || echo "weaknesses: ${#weaknesses[@]}, caught: $caught"
echo "game days: $n, experiments: $experiments, passed: $passed"
[ "$failed_days" -eq 0 ] && [ "$caught" -eq ${#weaknesses[@]} ]
