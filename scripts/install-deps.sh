#!/usr/bin/env bash
# Installs what firedrill's builds and tests need on a fresh Debian machine. Idempotent:
# does nothing when everything is already there.
set -euo pipefail

# prometheus: promtool, which scripts/check-monitoring.sh checks the alert rules with; python3:
# scripts/check-dashboards.py; buildah, debootstrap: the images (images/Containerfile, built
# from a Debian base made here, since there is no registry to pull one from).
packages=(nats-server prometheus prometheus-alertmanager nftables iproute2 procps jq python3
  buildah debootstrap)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# JetStream's fsync policy (sync_interval, "always") needs nats-server >= 2.10; Debian
# bookworm ships 2.9. 2.12 rather than 2.10: 2.10 creates a replicated stream only while
# the meta leader counts every peer online, and in 2 of 9 lab start-ups it counted one
# offline for minutes. Build the pinned release from its Go module once, cached by version
# outside the repo; the Makefile points TALK_NATS_SERVER at it.
nats_version=v2.12.15
nats_dir=/var/cache/firedrill/nats-server-$nats_version
if [ ! -x "$nats_dir/nats-server" ]; then
  echo "building nats-server $nats_version from its Go module (once)"
  mkdir -p "$nats_dir"
  GOBIN="$nats_dir" GOFLAGS=-mod=mod go install "github.com/nats-io/nats-server/v2@$nats_version"
fi

# Chart linting (scripts/lint-charts.sh) needs helm v3; Debian does not package it. Build
# the pinned release from its Go module once, cached by version outside the repo.
helm_version=v3.22.0
helm_dir=/var/cache/firedrill/helm-$helm_version
if [ ! -x "$helm_dir/helm" ]; then
  echo "building helm $helm_version from its Go module (once)"
  mkdir -p "$helm_dir"
  GOBIN="$helm_dir" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$helm_version"
fi

# The workspace pins Rust 1.95.0 (rust-toolchain.toml). Machines that ship it as "stable"
# but not under its version name get it linked instead of downloaded.
want=1.95.0
if ! rustup run "$want" rustc --version >/dev/null 2>&1; then
  if rustc +stable --version 2>/dev/null | grep -q "rustc $want "; then
    rustup toolchain link "$want" "$(rustc +stable --print sysroot)"
  else
    rustup toolchain install "$want" --profile minimal --component rustfmt,clippy
  fi
fi
rustup component add --toolchain "$want" rustfmt clippy >/dev/null 2>&1 || true
