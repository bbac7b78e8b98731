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
  4. cargo test             the operator's and agent's tests and chaosctl's cluster
                            tests, with KUBECONFIG set; a skip fails the run here
  5. e2e/images.sh, e2e/deploy.sh up
                            images from the dev build, firedrill and talk from their
                            charts (about 2 min)
  6. cargo test -p firedrill-e2e
                            the chart, the crash tests, the four missions as the
                            quarterly game day and a weakness, against the deployed
                            operator and agents (FIREDRILL_E2E_REQUIRE=1); about 13 min
  7. e2e/cluster/down.sh    always, and it checks nothing is left
--no-deploy stops after step 4 (a quicker check of the operator and agent alone).
--keep leaves the cluster up for inspection instead of step 7.
make e2e runs all of it. CI (make test) runs it with --no-deploy for now: in the one
fresh-clone CI run with steps 5-6, the game day's blackout failed on its
metrics-queryable probe, most likely through a CoreDNS replica in the blacked-out
zone; see e2e/README.md.
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

# The crates whose tests talk to a cluster: all of their tests run against this one, and
# chaosctl's cluster tests (its lab tests ran before, in `cargo test --workspace`). These
# tests skip when no cluster answers, which is right on a developer's machine and wrong
# here, so a skip fails the run. They run before firedrill is deployed: the operator's
# tests stand in for the agent themselves.
runs=("firedrill-operator --tests" "firedrill-agent --tests")
[[ -f cli/tests/cluster.rs ]] && runs+=("chaosctl --test cluster")
cluster_tests() {
	local package=$1 selection=$2
	step "cluster tests: $package $selection"
	# shellcheck disable=SC2086 # selection is one or more words on purpose
	cargo test -p "$package" --locked --no-fail-fast $selection -- --nocapture 2>&1 | tee "$log"
	if grep -q '^SKIPPED' "$log"; then
		step "a test of $package skipped although the cluster is up"
		exit 1
	fi
}
for run in "${runs[@]}"; do
	read -r package selection <<<"$run"
	cluster_tests "$package" "$selection"
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
export FIREDRILL_E2E_REQUIRE=1
cluster_tests firedrill-e2e --tests
grep '^\[.*\] BENCH' "$log" | sed 's/^/[e2e] /' || true
