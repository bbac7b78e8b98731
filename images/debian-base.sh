#!/usr/bin/env bash
# usage: images/debian-base.sh
#
# Makes the Debian image that images/Containerfile's rootfs stage runs in (its
# DEBIAN_IMAGE) where no registry can give one, as on firedrill's CI machine: a
# `debootstrap --variant=minbase` of Debian bookworm from the Debian mirror, committed into
# buildah's storage as localhost/firedrill/debian:bookworm. Prints that reference.
#
# The root filesystem is cached as a tarball in /var/cache/firedrill, one per month (Debian's
# point releases and security updates come in between), so a machine debootstraps once a
# month (about 35 s) and imports in a few seconds. bookworm because the binaries are built
# on bookworm: the libraries the images carry are the ones they were linked against.
set -euo pipefail

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
REF=localhost/firedrill/debian:$SUITE
CACHE=${FIREDRILL_CACHE:-/var/cache/firedrill}
TARBALL=$CACHE/debian-$SUITE-minbase-$(date -u +%Y%m).tar

log() { echo "debian-base: $*" >&2; }
work=
ctr=
cleanup() {
	[[ -z $work ]] || rm -rf "$work"
	[[ -z $ctr ]] || buildah rm "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for tool in buildah debootstrap; do
	command -v "$tool" >/dev/null || { log "$tool is not installed (scripts/install-deps.sh)"; exit 1; }
done

if [[ ! -s $TARBALL ]]; then
	log "debootstrap --variant=minbase $SUITE from $MIRROR (once a month)"
	work=$(mktemp -d /tmp/fd-debian.XXXXXX)
	if ! debootstrap --variant=minbase "$SUITE" "$work/rootfs" "$MIRROR" >"$work/log" 2>&1; then
		tail -20 "$work/log" >&2
		log "debootstrap failed"
		exit 1
	fi
	# The packages it downloaded and the apt lists: apt-get update fetches fresh ones.
	rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
	mkdir -p "$CACHE"
	tar --sort=name --numeric-owner -C "$work/rootfs" -cf "$TARBALL.tmp" .
	mv -f "$TARBALL.tmp" "$TARBALL"
fi

# Committed again whenever the tarball is newer than the image (a new month, a new machine).
made=$(buildah inspect --type image --format '{{index .ImageAnnotations "dev.firedrill.base"}}' "$REF" 2>/dev/null || true)
if [[ $made != "$(basename "$TARBALL")" ]]; then
	ctr=$(buildah from scratch)
	buildah add --quiet "$ctr" "$TARBALL" / >/dev/null
	buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		--cmd /bin/bash --annotation "dev.firedrill.base=$(basename "$TARBALL")" "$ctr"
	buildah commit --quiet --rm "$ctr" "$REF" >/dev/null
	ctr=
	log "$REF from $(basename "$TARBALL")"
fi
echo "$REF"
