# The two entry points a fresh machine needs; everything else is cargo.
.PHONY: game-day test deps

# See scripts/install-deps.sh: a JetStream new enough to honour fsync policies.
export TALK_NATS_SERVER ?= /var/cache/firedrill/nats-server-v2.10.29/nats-server

deps:
	@scripts/install-deps.sh

# The main job. Until the lab runner lands (issue: the lab), this checks the quarterly
# disaster-recovery game day and every experiment it runs, exactly as admission would.
game-day: deps
	cargo run -q --locked -p chaosctl -- validate experiments/*.yaml

test: deps
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo run -q --locked -p chaosctl -- crds --check charts/firedrill/crds
	cargo run -q --locked -p chaosctl -- validate experiments/*.yaml
	cargo test --workspace --locked
