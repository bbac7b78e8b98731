#!/usr/bin/env bash
# Builds the images firedrill's e2e tier runs and imports them into every node of the e2e
# cluster (e2e/cluster/image.sh; there is no registry):
#
#   docker.io/firedrill/operator:TAG      images/Containerfile, target operator
#   docker.io/firedrill/agent:TAG         images/Containerfile, target agent (with the
#                                         release profile: the size-optimized `agent`
#                                         profile, Cargo.toml)
#   docker.io/firedrill/talk-server:TAG   images/Containerfile, target talk-server
#   docker.io/firedrill/talk-load:TAG     images/Containerfile, target talk-load
#   docker.io/firedrill/chaosctl:TAG      images/Containerfile, target chaosctl
#   docker.io/firedrill/nats-server:TAG   the pinned nats-server build (scripts/install-deps.sh)
#   docker.io/firedrill/prometheus:TAG    Debian's /usr/bin/prometheus (2.42 in bookworm, built
#                                         without kubernetes_sd_configs: charts/talk's scrape
#                                         config does not load in it)
#   docker.io/firedrill/alertmanager:TAG  Debian's /usr/bin/prometheus-alertmanager and its
#                                         templates (/usr/share/prometheus/alertmanager)
#
# firedrill's own five are built with buildah from images/Containerfile by its prebuilt
# path (the binaries this script built, so the cluster runs what was tested), over a Debian
# base made here by images/debian-base.sh. The other three are one layer each, assembled
# here: the binary in /usr/local/bin with the shared libraries ldd names, /etc/passwd and
# /etc/group (root, nonroot 65532, nobody 65534), /tmp. No image has a shell. References
# are fully qualified (docker.io/...) because containerd stores them so; the charts may say
# firedrill/operator, which the kubelet normalises the same way.
#
# usage: e2e/images.sh [--tag TAG] [--profile release|dev] [--no-build] [--no-import] [--only NAME]...
#   --tag TAG    image tag (default: e2e; "git" = the short commit, +dirty if the tree is)
#   --profile P  the cargo profile of the binaries (default release; CI uses dev, whose
#                build `cargo test` has already made, instead of a second optimised build).
#                With release the agent is built with the `agent` profile (release built
#                for size: it idles in ~7 MiB instead of ~11, agent/README.md)
#   --no-build   use the binaries already in target/release and target/agent (or target/debug)
#   --no-import  only write the tarballs (no cluster needed)
#   --only NAME  build only this image (operator, agent, talk-server, ...; repeatable)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE_SH=$ROOT/e2e/cluster/image.sh
NATS_SERVER=${TALK_NATS_SERVER:-/var/cache/firedrill/nats-server-v2.12.15/nats-server}
PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}
ALERTMANAGER=${ALERTMANAGER:-/usr/bin/prometheus-alertmanager}
NFT=/usr/sbin/nft
REPO=docker.io/firedrill

TAG=e2e
PROFILE=release
BUILD=1
IMPORT_ARGS=()
ONLY=()
while (($#)); do
	case $1 in
	--tag) TAG=$2; shift ;;
	--profile) PROFILE=$2; shift ;;
	--no-build) BUILD=0 ;;
	--no-import) IMPORT_ARGS+=(--no-import) ;;
	--only) ONLY+=("$2"); shift ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "images.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
if [[ $TAG == git ]]; then
	TAG=$(git -C "$ROOT" rev-parse --short=12 HEAD)
	git -C "$ROOT" diff --quiet HEAD -- || TAG=$TAG-dirty
fi
[[ $TAG =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || { echo "images.sh: bad tag $TAG" >&2; exit 2; }

T0=$(date +%s)
log() { printf '[images %4ds] %s\n' "$(($(date +%s) - T0))" "$*"; }
wanted() {
	((${#ONLY[@]} == 0)) && return 0
	local o
	for o in "${ONLY[@]}"; do [[ $o == "$1" ]] && return 0; done
	return 1
}

# The agent's profile and the directory cargo puts each profile's binaries in.
case $PROFILE in
release) OUT=release AGENT_PROFILE=agent AGENT_OUT=agent ;;
dev) OUT=debug AGENT_PROFILE=dev AGENT_OUT=debug ;;
*) echo "images.sh: --profile is release or dev, not $PROFILE" >&2; exit 2 ;;
esac
if ((BUILD)); then
	if [[ $AGENT_PROFILE == "$PROFILE" ]]; then
		log "cargo build --profile $PROFILE (operator, agent, talk, chaosctl)"
		cargo build --profile "$PROFILE" --locked --manifest-path "$ROOT/Cargo.toml" \
			-p firedrill-operator -p firedrill-agent -p talk -p chaosctl --bins
	else
		log "cargo build --profile $PROFILE (operator, talk, chaosctl)"
		cargo build --profile "$PROFILE" --locked --manifest-path "$ROOT/Cargo.toml" \
			-p firedrill-operator -p talk -p chaosctl --bins
		if wanted agent; then
			log "cargo build --profile $AGENT_PROFILE (agent)"
			cargo build --profile "$AGENT_PROFILE" --locked --manifest-path "$ROOT/Cargo.toml" \
				-p firedrill-agent --bins
		fi
	fi
fi
REL=${CARGO_TARGET_DIR:-$ROOT/target}/$OUT
AGENT_REL=${CARGO_TARGET_DIR:-$ROOT/target}/$AGENT_OUT

WORK=$(mktemp -d /tmp/fd-images.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# add FS SRC DEST: copies the executable SRC to FS/DEST with the libraries ldd names.
add() {
	local fs=$1 src=$2 dest=$3 lib
	[[ -x $src && -f $src ]] || { echo "images.sh: missing $src (cargo build --release, --profile agent? scripts/install-deps.sh?)" >&2; exit 1; }
	mkdir -p "$fs$(dirname "$dest")"
	cp -L "$src" "$fs$dest"
	chmod 0755 "$fs$dest"
	# Debug info is not needed in a pod (dev builds carry line tables: ~100 MiB each).
	strip --strip-debug "$fs$dest" 2>/dev/null || true
	{ ldd "$src" 2>/dev/null || true; } | { grep -o '/[^ ]*' || true; } | while read -r lib; do
		[[ -e $lib ]] || continue
		mkdir -p "$fs$(dirname "$lib")"
		cp -L "$lib" "$fs$lib"
	done
}

# new_fs NAME: an empty root filesystem with users and /tmp.
new_fs() {
	local fs=$WORK/$1
	mkdir -p "$fs/etc" "$fs/tmp" "$fs/usr/local/bin"
	chmod 1777 "$fs/tmp"
	printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
		'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' \
		'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' >"$fs/etc/passwd"
	printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' 'nobody:x:65534:' >"$fs/etc/group"
	echo "$fs"
}

# The images images/Containerfile defines.
CONTAINERFILE_IMAGES=(operator agent talk-server talk-load chaosctl)

# image NAME ENTRYPOINT FS: imports FS as $REPO/NAME:$TAG.
image() {
	local name=$1 entrypoint=$2 fs=$3
	"$IMAGE_SH" "${IMPORT_ARGS[@]}" --entrypoint "$entrypoint" "$REPO/$name:$TAG" "$fs"
}

# firedrill's own images come from images/Containerfile, as a user builds them, by its
# prebuilt path: the binaries built above, staged in target/image-bin/ of the context.
BUILT=()
for name in "${CONTAINERFILE_IMAGES[@]}"; do
	wanted "$name" && BUILT+=("$name")
done
if ((${#BUILT[@]})); then
	command -v buildah >/dev/null || { echo "images.sh: buildah is not installed (make deps)" >&2; exit 1; }
	stage=${CARGO_TARGET_DIR:-$ROOT/target}/image-bin
	[[ $stage == "$ROOT/target/image-bin" ]] ||
		{ echo "images.sh: the build context is $ROOT: CARGO_TARGET_DIR must be $ROOT/target" >&2; exit 1; }
	rm -rf "$stage"
	mkdir -p "$stage"
	for bin in "$REL/firedrill-operator" "$AGENT_REL/firedrill-agent" "$REL/talk-server" \
		"$REL/talk-load" "$REL/chaosctl"; do
		[[ -x $bin ]] || { echo "images.sh: missing $bin (cargo build --profile $PROFILE?)" >&2; exit 1; }
		cp -L "$bin" "$stage/"
	done
	base=$("$ROOT/images/debian-base.sh")
	for name in "${BUILT[@]}"; do
		log "buildah bud --target $name (images/Containerfile)"
		# chroot isolation: no OCI runtime needed. --timestamp 0: the same files give the
		# same image. --layers: the rootfs stage is built once for all five.
		BUILDAH_ISOLATION=chroot buildah bud --quiet --layers --timestamp 0 \
			-f "$ROOT/images/Containerfile" --target "$name" \
			--build-arg BINARIES=prebuilt --build-arg "DEBIAN_IMAGE=$base" \
			-t "$REPO/$name:$TAG" "$ROOT" >/dev/null
		rm -f "$WORK/$name.tar"
		buildah push --quiet "$REPO/$name:$TAG" "docker-archive:$WORK/$name.tar:$REPO/$name:$TAG"
		"$IMAGE_SH" "${IMPORT_ARGS[@]}" --archive "$WORK/$name.tar" "$REPO/$name:$TAG"
	done
	rm -rf "$stage"
fi
if wanted nats-server; then
	fs=$(new_fs nats-server)
	add "$fs" "$NATS_SERVER" /usr/local/bin/nats-server
	image nats-server /usr/local/bin/nats-server "$fs"
fi
if wanted prometheus; then
	fs=$(new_fs prometheus)
	add "$fs" "$PROMETHEUS" /usr/local/bin/prometheus
	# Its TSDB goes to ./data; the working directory is /.
	mkdir -p "$fs/data" && chmod 0777 "$fs/data"
	image prometheus /usr/local/bin/prometheus "$fs"
fi
if wanted alertmanager; then
	fs=$(new_fs alertmanager)
	add "$fs" "$ALERTMANAGER" /usr/local/bin/alertmanager
	# Debian's build reads its notification templates from here.
	mkdir -p "$fs/usr/share/prometheus"
	cp -a /usr/share/prometheus/alertmanager "$fs/usr/share/prometheus/"
	mkdir -p "$fs/data" && chmod 0777 "$fs/data"
	image alertmanager /usr/local/bin/alertmanager "$fs"
fi
log "done: $REPO/*:$TAG"
