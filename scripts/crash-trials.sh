#!/usr/bin/env bash
# Crash trials for the lab (issue 15, item 6 "Proof at volume"): kill chaosctl, and in some
# trials the lab's supervisor too, at a random moment of a mission experiment, take the lab
# down, and count what is left on the whole machine. Run `scripts/crash-trials.sh --help`.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/crash-trials.sh N [--seed S] [--bin DIR] [--out DIR]
       scripts/crash-trials.sh --check

Runs N crash trials in the lab (needs root and the lab to itself). Each trial:
  1. runs `chaosctl game-day experiments/gameday-quarterly-dr.yaml --only EXP` in the
     background; EXP is drawn uniformly from zone-blackout, network-partition, disk-loss
     and ops-tool-outage. game-day brings the lab up itself (`lab up`: an earlier lab is
     cleaned up first) and takes it down when it finishes;
  2. SIGKILLs chaosctl at a moment drawn uniformly from 0 to EXP's measured run length
     (lab up included), and in one trial out of three (drawn) the lab's supervisor
     (`chaosctl lab supervise`) at the same moment;
  3. runs `chaosctl lab down`;
  4. counts what is left on the whole machine: firedrill's nftables tables (table
     `inet firedrill`, faults/src/rules.rs) in the host's, every named and every
     process's network namespace; lab processes still alive (working in, running from,
     naming or holding files under /var/lib/firedrill, or living in one of the trial's
     fdlab-* namespaces) and stopped (state T) lab programs; mounts under /var/lib/firedrill
     (and netns mounts /run/netns/fdlab-*) in every mount namespace; fdlab-* network
     namespaces and links; unreverted entries in the fault journal.

It prints one line per trial (number, experiment, kill moment and phase, what was killed,
`lab down`'s summary, leftovers) with the leftovers' detail under it, then a failures
line, and last exactly `trials: N, leftovers: K, seed: S`. Leftovers are removed after
they are recorded (a second `lab down`, then by hand) so the next trial starts clean.
A trial whose game day ends before the kill moment is reported as such; one whose lab up
failed, or whose `lab down` exited non-zero, is a failure.

Options:
  --seed S   seed bash's RANDOM with S (RANDOM=S): the same seed draws the same trials
             (default: a random seed, printed)
  --bin DIR  directory with chaosctl, talk-server, talk-load, firedrill-powerloss
             (default: target/release of this repository)
  --out DIR  where to keep each trial's logs, reports and leftovers
             (default: /tmp/crash-trials.SEED.TIME)
  --check    no trials: count and print what of a lab is left on the machine now (after
             a `chaosctl lab down`, say); exit 1 if anything is
  -h, --help this help

Environment: FIREDRILL_LAB_DIR (default /var/lib/firedrill/lab), TALK_NATS_SERVER
(default: the pinned /var/cache/firedrill/nats-server-v2.12.15/nats-server).
Exit status: 0 when no trial left anything and none failed, 1 otherwise, 2 on usage errors.
EOF
}

die() {
  echo "crash-trials: $*" >&2
  exit 2
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
n=""
check=""
seed=""
bin=""
out=""
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --check) check=1; shift ;;
    --seed) [ $# -ge 2 ] || die "--seed needs a value"; seed=$2; shift 2 ;;
    --seed=*) seed=${1#*=}; shift ;;
    --bin) [ $# -ge 2 ] || die "--bin needs a directory"; bin=$2; shift 2 ;;
    --bin=*) bin=${1#*=}; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$n" ] || die "one N only (see --help)"; n=$1; shift ;;
  esac
done
[ -n "$n" ] || [ -n "$check" ] || { usage >&2; exit 2; }
[ -z "$n" ] || [ -z "$check" ] || die "--check runs no trials: no N with it"
[ -n "$check" ] || [[ $n =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, not '$n'"
if [ -z "$seed" ]; then
  seed=$((SRANDOM % 1000000))
fi
[[ $seed =~ ^[0-9]+$ ]] || die "--seed must be a non-negative integer, not '$seed'"
if [ "$(id -u)" -ne 0 ]; then
  echo "crash-trials: must run as root: the lab is network namespaces, nftables rules and mounts (sudo $0 ...)" >&2
  exit 2
fi
# --check only looks at the machine: it needs no build.
if [ -z "$check" ]; then
  bin_arg=${bin:-$repo/target/release}
  bin=$(cd "$bin_arg" 2>/dev/null && pwd) || die "--bin $bin_arg: no such directory"
  for prog in chaosctl talk-server talk-load firedrill-powerloss; do
    [ -x "$bin/$prog" ] || die "$bin/$prog is missing (cargo build --release --locked -p chaosctl -p talk -p firedrill-powerloss --bins)"
  done
fi
for tool in ip nft nsenter find; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh)"
done
export TALK_NATS_SERVER=${TALK_NATS_SERVER:-/var/cache/firedrill/nats-server-v2.12.15/nats-server}
export FIREDRILL_LAB_DIR=${FIREDRILL_LAB_DIR:-/var/lib/firedrill/lab}
lab_dir=$FIREDRILL_LAB_DIR
prefix=/var/lib/firedrill
case $lab_dir in "$prefix"/*) ;; *) prefix=$lab_dir ;; esac
chaosctl=$bin/chaosctl
plan=$repo/experiments/gameday-quarterly-dr.yaml
if [ -n "$check" ]; then
  out=$(mktemp -d /tmp/crash-trials-check.XXXXXX)
fi
out=${out:-/tmp/crash-trials.$seed.$(date +%Y%m%dT%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$repo"

experiments=(zone-blackout network-partition disk-loss ops-tool-outage)
# How long `game-day --only EXP` runs from start to exit, lab up (~14 s) and lab down (~5 s)
# included, in milliseconds: one passing run of each, measured on the 2-core lab VM.
declare -A window_ms=(
  [zone-blackout]=93000
  [network-partition]=95000
  [disk-loss]=84000
  [ops-tool-outage]=80000
)
lab_programs=" nats-server talk-server talk-load prometheus alertmanager prometheus-aler firedrill-power chaosctl "

RANDOM=$seed
draw=0
# draw MAX: sets $draw to a uniform integer in [0, MAX) from bash's seeded RANDOM (30 bits).
# Never call it in a subshell: the parent's sequence would not advance.
draw_below() {
  draw=$((((RANDOM << 15) | RANDOM) % $1))
}

now_ms=0
clock() {
  local us=${EPOCHREALTIME//[.,]/}
  now_ms=$((us / 1000))
}

# Our own shell and its ancestors are never leftovers (the script may be run from a shell
# whose working directory is in the lab).
declare -A spared=()
p=$$
while [ "$p" -gt 1 ] && [ -z "${spared[$p]:-}" ]; do
  spared[$p]=1
  stat_line=""
  read -r stat_line <"/proc/$p/stat" || break
  rest=${stat_line##*) }
  read -r _ p _ <<<"$rest"
done

# proc_state PID: sets $state and $comm of PID ("" when it is gone).
state=""
comm=""
proc_state() {
  local line="" rest
  state=""
  comm=""
  read -r line 2>/dev/null <"/proc/$1/stat" || return 0
  rest=${line##*) }
  state=${rest%% *}
  comm=${line#* (}
  comm=${comm%)*}
}

alive() {
  kill -0 "$1" 2>/dev/null || return 1
  proc_state "$1"
  [ -n "$state" ] && [ "$state" != Z ]
}

# Pids of `chaosctl lab supervise` for this lab directory, found by command line.
supervisor_pids() {
  local d args i j dir
  sup_pids=()
  for d in /proc/[0-9]*; do
    args=()
    mapfile -d '' args 2>/dev/null <"$d/cmdline" || continue
    for ((i = 0; i + 1 < ${#args[@]}; i++)); do
      if [ "${args[i]}" = lab ] && [ "${args[i + 1]}" = supervise ]; then
        dir=""
        for ((j = i + 2; j < ${#args[@]}; j++)); do
          case ${args[j]} in
            --dir) dir=${args[j + 1]:-} ;;
            --dir=*) dir=${args[j]#--dir=} ;;
          esac
        done
        [ "$dir" = "$lab_dir" ] && sup_pids+=("${d#/proc/}")
        break
      fi
    done
  done
}
sup_pids=()

# Inodes of the fdlab-* namespaces that exist now, name by inode (added to lab_ns).
declare -A lab_ns=()
remember_lab_namespaces() {
  local f ino
  for f in /run/netns/fdlab-*; do
    [ -e "$f" ] || continue
    ino=$(stat -L -c %i "$f" 2>/dev/null) || continue
    lab_ns[$ino]=${f##*/}
  done
}

# scan FILE: writes one line per leftover to FILE ("kind: detail"), and the pids, mounts,
# tables, namespaces and links found to the cleanup lists.
left_pids=()
left_tables=()
left_netns=()
left_links=()
scan() {
  local file=$1 f name ino path line pid mp fstype src nsid detail kw family table
  : >"$file"
  left_pids=()
  left_tables=()
  left_netns=()
  left_links=()

  # Network namespaces and links.
  while read -r name _; do
    case $name in
      fdlab-*) echo "netns: $name (ip netns list)" >>"$file"; left_netns+=("$name") ;;
    esac
  done < <(ip netns list 2>/dev/null || true)
  while read -r name; do
    name=${name%%@*}
    case $name in
      fdlab-*) echo "link: $name in the host namespace (ip -o link show)" >>"$file"; left_links+=("$name") ;;
    esac
  done < <(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' || true)

  # Every network namespace: the host's, each named one, each process's; by inode.
  declare -A ns_path=() ns_label=()
  ino=$(stat -L -c %i /proc/self/ns/net)
  local host_ino=$ino
  ns_path[$ino]=/proc/self/ns/net
  ns_label[$ino]=host
  for f in /run/netns/*; do
    [ -e "$f" ] || continue
    ino=$(stat -L -c %i "$f" 2>/dev/null) || continue
    if [ -z "${ns_path[$ino]:-}" ]; then
      ns_path[$ino]=$f
      ns_label[$ino]="netns ${f##*/}"
    fi
  done
  declare -A proc_net=()
  while read -r path nsid; do
    pid=${path#/proc/}
    pid=${pid%%/*}
    ino=${nsid//[^0-9]/}
    [ -n "$ino" ] || continue
    proc_net[$pid]=$ino
    if [ -z "${ns_path[$ino]:-}" ]; then
      proc_state "$pid"
      ns_path[$ino]=/proc/$pid/ns/net
      ns_label[$ino]="netns of pid $pid ($comm, inode $ino)"
    fi
  done < <(find /proc/[0-9]*/ns/net -maxdepth 0 -printf '%p %l\n' 2>/dev/null || true)
  for ino in "${!ns_path[@]}"; do
    path=${ns_path[$ino]}
    while read -r kw family table _; do
      # "table inet firedrill"
      [ "$kw" = table ] || continue
      case $table in firedrill*) ;; *) continue ;; esac
      detail=$(nsenter --net="$path" nft list table "$family" "$table" 2>/dev/null |
        awk '$1 == "chain" {printf "%s%s", sep, $2; sep=","}' || true)
      echo "nft: table $family $table in ${ns_label[$ino]} (chains: ${detail:-none})" >>"$file"
      left_tables+=("$path $family $table")
    done < <(nsenter --net="$path" nft list tables 2>/dev/null || true)
  done

  # Mounts under the lab's directory and fdlab netns mounts, in every mount namespace.
  declare -A mnt_seen=() mounts=()
  local key
  while read -r path nsid; do
    pid=${path#/proc/}
    pid=${pid%%/*}
    [ -n "$nsid" ] || continue
    [ -z "${mnt_seen[$nsid]:-}" ] || continue
    mnt_seen[$nsid]=1
    while read -r mp fstype src; do
      key="$mp ($fstype from $src)"
      mounts[$key]+="${mounts[$key]:+, }$nsid (pid $pid)"
    done < <(awk -v p="$prefix" -v n=/run/netns/fdlab- '
      { for (i = 7; $i != "-"; i++) ; fs = $(i + 1); src = $(i + 2) }
      index($5, p "/") == 1 || $5 == p || index($5, n) == 1 { print $5, fs, src }' \
      "/proc/$pid/mountinfo" 2>/dev/null || true)
  done < <({ find /proc/$$/ns/mnt -maxdepth 0 -printf '%p %l\n'; find /proc/[0-9]*/ns/mnt -maxdepth 0 -printf '%p %l\n'; } 2>/dev/null || true)

  # One line per mount, however many mount namespaces inherited it.
  for key in "${!mounts[@]}"; do
    echo "mount: $key in ${mounts[$key]}" >>"$file"
  done

  # Processes: pointing into the lab's directory, or in one of this trial's namespaces.
  declare -A why=()
  while read -r path line; do
    pid=${path#/proc/}
    pid=${pid%%/*}
    why[$pid]+=" ${path#/proc/"$pid"/}->$line"
  done < <(find /proc/[0-9]*/cwd /proc/[0-9]*/exe -maxdepth 0 \( -lname "$prefix" -o -lname "$prefix/*" \) -printf '%p %l\n' 2>/dev/null || true)
  declare -A fds=()
  while read -r path line; do
    pid=${path#/proc/}
    pid=${pid%%/*}
    fds[$pid]=$((${fds[$pid]:-0} + 1))
    if [ "${fds[$pid]}" -le 2 ]; then why[$pid]+=" fd/${path##*/}->$line"; fi
  done < <(find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 \( -lname "$prefix" -o -lname "$prefix/*" \) -printf '%p %l\n' 2>/dev/null || true)
  local args a
  for f in /proc/[0-9]*; do
    pid=${f#/proc/}
    args=()
    mapfile -d '' args 2>/dev/null <"$f/cmdline" || continue
    for a in "${args[@]}"; do
      case $a in
        "$prefix" | "$prefix"/* | *"=$prefix" | *"=$prefix"/*) why[$pid]+=" arg:$a"; break ;;
      esac
    done
    ino=${proc_net[$pid]:-}
    if [ -n "$ino" ] && [ "$ino" != "$host_ino" ] && [ -n "${lab_ns[$ino]:-}" ]; then
      why[$pid]+=" in-lab-netns:${lab_ns[$ino]}"
    fi
    proc_state "$pid"
    case $state in
      T | t) case $lab_programs in *" $comm "*) why[$pid]+=" stopped-lab-program" ;; esac ;;
    esac
  done
  for pid in "${!why[@]}"; do
    [ -z "${spared[$pid]:-}" ] || continue
    [ "$pid" != "$$" ] || continue
    proc_state "$pid"
    if [ -z "$state" ] || [ "$state" = Z ]; then continue; fi
    args=()
    mapfile -d '' args 2>/dev/null <"/proc/$pid/cmdline" || true
    echo "process: pid $pid $comm state $state:${why[$pid]} cmdline: ${args[*]:0:6}" >>"$file"
    left_pids+=("$pid")
  done

  # Faults still in the journal (down reverts them and removes their entries).
  if [ -d "$lab_dir/journal" ]; then
    for f in "$lab_dir"/journal/*; do
      [ -e "$f" ] || continue
      echo "journal: ${f#"$lab_dir"/} left in the fault journal: $(head -c 300 "$f" | tr '\n' ' ')" >>"$file"
    done
  fi
}

# Removes what scan found, so the next trial starts clean: the pids by id (they are the
# lab's, started by this script's chaosctl), tables, mounts, namespaces, links.
clean_by_hand() {
  local pid entry path family table
  for pid in "${left_pids[@]}"; do
    kill -CONT "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
  done
  for entry in "${left_tables[@]}"; do
    read -r path family table <<<"$entry"
    nsenter --net="$path" nft delete table "$family" "$table" 2>/dev/null || true
  done
  while read -r path; do
    umount -l "$path" 2>/dev/null || true
  done < <(awk -v p="$prefix" -v n=/run/netns/fdlab- \
    'index($5, p "/") == 1 || index($5, n) == 1 {print $5}' /proc/self/mountinfo | sort -r)
  for entry in "${left_netns[@]}"; do ip netns del "$entry" 2>/dev/null || true; done
  for entry in "${left_links[@]}"; do ip link del "$entry" 2>/dev/null || true; done
  rm -f "$lab_dir"/journal/* 2>/dev/null || true
}

if [ -n "$check" ]; then
  remember_lab_namespaces
  scan "$out/leftovers.txt"
  cat "$out/leftovers.txt"
  found=$(wc -l <"$out/leftovers.txt")
  rm -rf "$out"
  echo "leftovers: $found"
  [ "$found" -eq 0 ]
  exit
fi

# The trials delete every firedrill table they find in any namespace and kill what they
# count: on a machine whose cluster tier is up (e2e/run.sh, state in /var/lib/firedrill-cluster)
# they would revert its faults behind the operator's back and break its tests.
cluster_state=/var/lib/firedrill-cluster
if pgrep -f -- "$cluster_state/" >/dev/null; then
  die "the cluster tier is up (processes use $cluster_state): take it down first (e2e/cluster/down.sh) or wait for e2e/run.sh to finish"
fi

echo "crash-trials: $n trial(s), seed $seed, binaries $bin, lab $lab_dir, logs $out"
# Start from a clean machine, or the first trial's count means nothing.
"$chaosctl" lab down >"$out/initial-down.log" 2>&1 || true
lab_ns=()
scan "$out/initial-leftovers.txt"
if [ -s "$out/initial-leftovers.txt" ]; then
  echo "crash-trials: the machine is not clean after \`chaosctl lab down\`, before any trial:" >&2
  sed 's/^/  /' "$out/initial-leftovers.txt" >&2
  exit 1
fi

leftovers=0
failures=0
failed_trials=()
trials=0
for ((t = 1; t <= n; t++)); do
  # Every trial draws the same three numbers, whatever happens in it.
  draw_below ${#experiments[@]}
  exp=${experiments[draw]}
  draw_below $((window_ms[$exp] + 1))
  kill_at=$draw
  draw_below 3
  kill_supervisor=$((draw == 0))

  dir=$out/trial-$t
  mkdir -p "$dir"
  lab_ns=()
  clock
  started=$now_ms
  "$chaosctl" game-day "$plan" --only "$exp" --bin-dir "$bin" --output json \
    --report-dir "$dir/report" >"$dir/game-day.json" 2>"$dir/game-day.log" &
  gd=$!
  ended=""
  while :; do
    clock
    elapsed=$((now_ms - started))
    if ! alive "$gd"; then ended=$elapsed; break; fi
    [ "$elapsed" -lt "$kill_at" ] || break
    sleep 0.05
  done

  killed=""
  if [ -z "$ended" ]; then
    supervisor_pids
    if [ "$kill_supervisor" -eq 1 ] && [ ${#sup_pids[@]} -gt 0 ]; then
      kill -KILL "$gd" "${sup_pids[@]}" 2>/dev/null || true
      killed="chaosctl (pid $gd) + supervisor (pid ${sup_pids[*]})"
    else
      kill -KILL "$gd" 2>/dev/null || true
      killed="chaosctl (pid $gd)"
      [ "$kill_supervisor" -eq 0 ] || killed+=" (supervisor drawn, not running yet)"
    fi
    clock
    elapsed=$((now_ms - started))
  fi
  rc=0
  # (braces: no "Killed" job notice on stderr)
  { wait "$gd" || rc=$?; } 2>/dev/null
  remember_lab_namespaces

  # Where the run was: the last phase it printed.
  phase=$(grep -oE "\\[$exp\\] [A-Za-z]+:" "$dir/game-day.log" | tail -n 1 | sed -E 's/.* ([A-Za-z]+):/\1/' || true)
  if ! grep -q '^lab: up in' "$dir/game-day.log"; then
    phase="lab up"
  fi
  phase=${phase:-started}

  failure=""
  if [ -n "$ended" ]; then
    verdict=$(jq -r '.verdict // empty' "$dir/game-day.json" 2>/dev/null || true)
    if [ "$phase" = "lab up" ]; then
      failure="lab up failed (game-day exited $rc after $((ended / 1000)).$(printf %03d $((ended % 1000)))s): $(grep -vE '^\s*$' "$dir/game-day.log" | tail -n 2 | tr '\n' ' ')"
      what="game-day exited $rc during lab up before the kill at ${kill_at}ms"
    else
      what="not killed: game-day ended first ($((ended / 1000)).$(printf %03d $((ended % 1000)))s, rc $rc, verdict ${verdict:-none}; kill was drawn at ${kill_at}ms)"
    fi
  else
    what="killed ${killed} at $((elapsed / 1000)).$(printf %03d $((elapsed % 1000)))s (drawn ${kill_at}ms) during ${phase}"
  fi

  cp -f "$lab_dir/events.log" "$dir/events.log" 2>/dev/null || true
  cp -f "$lab_dir/supervisor.log" "$dir/supervisor.log" 2>/dev/null || true
  down_rc=0
  "$chaosctl" lab down >"$dir/down.log" 2>&1 || down_rc=$?
  down=$(grep -E '^lab: (down:|nothing)' "$dir/down.log" | tail -n 1 | sed 's/^lab: //' || true)
  if [ "$down_rc" -ne 0 ]; then
    failure+="${failure:+; }lab down exited $down_rc: $(tr '\n' ' ' <"$dir/down.log")"
  fi

  scan "$dir/leftovers.txt"
  found=$(wc -l <"$dir/leftovers.txt")
  trials=$t
  if [ "$found" -eq 0 ]; then
    echo "trial $t/$n: $exp, $what; lab down rc $down_rc (${down:-?}); leftovers: none"
  else
    leftovers=$((leftovers + found))
    echo "trial $t/$n: $exp, $what; lab down rc $down_rc (${down:-?}); leftovers: $found"
    sed 's/^/    /' "$dir/leftovers.txt"
    # Recorded; now clean up so that the next trial is not counted against this one.
    "$chaosctl" lab down >"$dir/second-down.log" 2>&1 || true
    scan "$dir/leftovers-after-second-down.txt"
    if [ -s "$dir/leftovers-after-second-down.txt" ]; then
      echo "    a second lab down left $(wc -l <"$dir/leftovers-after-second-down.txt") of them; removing them by hand"
      clean_by_hand
      sleep 1
      scan "$dir/leftovers-after-cleanup.txt"
      if [ -s "$dir/leftovers-after-cleanup.txt" ]; then
        echo "crash-trials: cannot clean up after trial $t, stopping:" >&2
        sed 's/^/  /' "$dir/leftovers-after-cleanup.txt" >&2
        echo "failures: $failures${failed_trials[*]:+ (trials ${failed_trials[*]})}"
        echo "trials: $trials, leftovers: $leftovers, seed: $seed"
        exit 1
      fi
    else
      echo "    a second lab down removed them"
    fi
  fi
  if [ -n "$failure" ]; then
    failures=$((failures + 1))
    failed_trials+=("$t")
    echo "    FAILURE: $failure"
  fi
done

echo "failures: $failures${failed_trials[*]:+ (trials ${failed_trials[*]})}; logs: $out"
echo "trials: $trials, leftovers: $leftovers, seed: $seed"
[ "$leftovers" -eq 0 ] && [ "$failures" -eq 0 ]
