#!/usr/bin/env bash
# The cluster tier, as CI runs it: build (or reuse) the pinned Kubernetes, bring up the
# three-zone cluster, smoke-test it, run every cluster test against it, and take it down
# again however the run ends.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
	cat <<EOF
usage: e2e/run.sh [--no-deploy] [--keep]

Runs as root. Steps, each timed:
  1. e2e/cluster/build.sh   pinned components, cached in /var/cache/firedrill by version
                            (about 30 min cold on 2 cores, 1 s warm)
  2. e2e/cluster/up.sh      control plane + nodes fd-zone-a/b/c (about 20-45 s)
  3. e2e/cluster/smoke.sh   pod per zone, pod-to-pod, Service, DNS
  4. cluster tests          the operator's and agent's tests and chaosctl's cluster
                            tests, with KUBECONFIG set; a skip fails the run here.
                            The binaries cargo test --workspace built, run directly
                            (cargo test -p would rebuild dependencies)
  5. e2e/images.sh, e2e/deploy.sh up
                            images from the dev build, firedrill and talk from their
                            charts (about 2 min)
  6. e2e tests              the chart, the crash tests, the four missions as the
                            quarterly game day, a weakness, lapses, a sandbox recreated
                            and a node rebooted mid-fault, against the deployed
                            operator and agents (FIREDRILL_E2E_REQUIRE=1); about 18 min
                            (follow.rs: about 5 min)
  7. e2e/cluster/down.sh    always, and it checks nothing is left
--no-deploy stops after step 4 (a quicker check of the operator and agent alone).
--keep leaves the cluster up for inspection instead of step 7.
make test (CI) and make e2e run all of it.
EOF
}

keep=0
deployed=1
for arg in "$@"; do
	case $arg in
	-h | --help) usage; exit 0 ;;
	--keep) keep=1 ;;
	--no-deploy) deployed=0 ;;
	*) usage >&2; exit 2 ;;
	esac
done

started=$SECONDS
step() { printf '[e2e %4ds] %s\n' $((SECONDS - started)) "$*"; }

log=$(mktemp)
teardown() {
	local rc=$?
	rm -f "$log"
	# down.sh removes the cluster's state, logs included: keep the logs of a failed run.
	if [[ $rc != 0 && $keep == 0 && -d /var/lib/firedrill-cluster/logs ]]; then
		local saved
		saved=/var/tmp/firedrill-cluster-logs-$(date +%Y%m%d-%H%M%S)
		cp -r /var/lib/firedrill-cluster/logs "$saved" && step "the cluster's logs are kept in $saved"
	fi
	if [[ $keep == 1 ]]; then
		step "cluster left up (--keep); take it down with e2e/cluster/down.sh"
	else
		step "down"
		e2e/cluster/down.sh || rc=1
	fi
	step "done (exit $rc)"
	exit "$rc"
}

step "build (cached by version)"
e2e/cluster/build.sh
trap teardown EXIT
step "up"
e2e/cluster/up.sh
export KUBECONFIG=/var/lib/firedrill-cluster/kubeconfig
step "smoke"
e2e/cluster/smoke.sh

# The test binaries `cargo test --workspace` builds, one "dir<TAB>kind<TAB>name<TAB>path"
# line each (dir relative to the workspace). The cluster tests run these binaries rather
# than `cargo test -p PACKAGE`: cargo unifies features over the packages selected, so
# selecting one package builds its dependencies again with other features, about ten
# minutes of a CI run for nothing. After `cargo test --workspace` this builds nothing.
test_binaries() {
	cargo test --workspace --locked --no-run --message-format=json | python3 -c '
import json, os, sys
root = os.getcwd()
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") != "compiler-artifact" or not message.get("executable"):
        continue
    if not message["profile"]["test"]:
        continue
    package_dir = os.path.relpath(os.path.dirname(message["manifest_path"]), root)
    kind = message["target"]["kind"][0]
    print(package_dir, kind, message["target"]["name"], message["executable"], sep="\t")
' | sort
}

# The crates whose tests talk to a cluster: all of their tests run against this one, and
# chaosctl's cluster tests (its lab tests ran before, in `cargo test --workspace`). These
# tests skip when no cluster answers, which is right on a developer's machine and wrong
# here, so a skip fails the run. They run before firedrill is deployed: the operator's
# tests stand in for the agent themselves.
step "test binaries (built by cargo test --workspace)"
binaries=$(test_binaries)
runs=("operator" "agent")
[[ -f cli/tests/cluster.rs ]] && runs+=("cli cluster")
# Runs every test binary of the crate in DIR (or only its test target NAME), each from
# the crate's directory as cargo would, all of them even when one fails.
cluster_tests() {
	local dir=$1 only=${2:-} failed=0 ran=0 kind name path
	step "cluster tests: $dir${only:+ --test $only}"
	: >"$log"
	while IFS=$'\t' read -r _ kind name path; do
		[[ -n $only && $name != "$only" ]] && continue
		ran=$((ran + 1))
		printf '     Running %s (%s %s)\n' "${path#"$PWD"/}" "$kind" "$name"
		(cd "$dir" && "$path" --nocapture) 2>&1 | tee -a "$log" || failed=1
	done < <(awk -F'\t' -v dir="$dir" '$1 == dir' <<<"$binaries")
	if [[ $ran == 0 ]]; then
		step "no test binary found for $dir${only:+ --test $only}"
		exit 1
	fi
	if grep -q '^SKIPPED' "$log"; then
		step "a test in $dir skipped although the cluster is up"
		exit 1
	fi
	if [[ $failed == 1 ]]; then
		step "tests in $dir failed"
		exit 1
	fi
}
# The cluster is up: every cluster test must reach it, and fails (not skips) if it cannot.
export FIREDRILL_E2E_REQUIRE=1
for run in "${runs[@]}"; do
	read -r dir only <<<"$run"
	cluster_tests "$dir" "$only"
done

# Then firedrill and talk as a user deploys them: images from the dev build the tests
# above already made (an optimised build would add minutes to a cold CI run), the charts
# installed with helm, and the e2e tests against them.
if [[ $deployed == 0 ]]; then
	step "firedrill and talk not deployed (--no-deploy): e2e tests not run"
	exit 0
fi
step "images (dev build)"
e2e/images.sh --profile dev
step "deploy firedrill and talk"
e2e/deploy.sh up
cluster_tests e2e
grep '^\[.*\] BENCH' "$log" | sed 's/^/[e2e] /' || true
