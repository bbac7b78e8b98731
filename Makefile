# The two entry points a fresh machine needs; everything else is cargo.
.PHONY: game-day test e2e deps

# See scripts/install-deps.sh: a JetStream new enough to honour fsync policies.
export TALK_NATS_SERVER ?= /var/cache/firedrill/nats-server-v2.12.15/nats-server

deps:
	@scripts/install-deps.sh

# The main job: the quarterly disaster-recovery game day, for real, in the lab (root).
game-day: deps
	cargo build -q --release --locked -p chaosctl -p talk -p firedrill-powerloss --bins
	target/release/chaosctl validate -q experiments/*.yaml
	target/release/chaosctl game-day experiments/gameday-quarterly-dr.yaml

# Root-only tests fail rather than skip when they cannot run (not root, a tool missing).
test: export FIREDRILL_ROOT_REQUIRE = 1
test: deps
	# The cluster tier's Kubernetes build (about 11 min cold, CPU-bound) runs at the lowest
	# priority beside the checks and tests below, which leave the CPUs idle much of the time
	# (the lab tests wait on game days); e2e/run.sh's build step waits for it and finds it
	# cached. Its log: /tmp/firedrill-cluster-build.log.
	nohup nice -n 19 e2e/cluster/build.sh >/tmp/firedrill-cluster-build.log 2>&1 &
	# The Debian base the images are built over (images/debian-base.sh: a debootstrap,
	# about 35 s cold, cached a month), made now so that e2e/images.sh finds it.
	nohup nice -n 19 images/debian-base.sh >/tmp/firedrill-debian-base.log 2>&1 &
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo run -q --locked -p chaosctl -- crds --check charts/firedrill/crds
	cargo run -q --locked -p chaosctl -- validate experiments/*.yaml
	scripts/lint-charts.sh
	# promtool check and test rules, the dashboards (JSON, PromQL, metric names), the
	# PrometheusRule as the chart renders it.
	scripts/check-monitoring.sh
	cargo build -q --workspace --bins --locked
	cargo test --workspace --locked
	# Three lab crash trials (chaosctl, sometimes the supervisor, SIGKILLed mid-experiment;
	# nothing may be left after lab down); the seed is printed to reproduce a failure.
	scripts/crash-trials.sh 3 --bin $(CURDIR)/target/debug
	e2e/run.sh

# The cluster tier alone (root), as the end of `make test` runs it: build or reuse the
# pinned Kubernetes, bring up the three-zone cluster, run the cluster tests on it, deploy
# firedrill and talk from their charts, run the e2e tests against them, take it down.
e2e: deps
	e2e/run.sh
