#!/usr/bin/env bash
# Builds a one-layer container image from files on disk and imports it into the
# containerd of every node of firedrill's e2e cluster. There is no registry here: every
# image a pod runs comes in this way.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LOG_TAG=image

usage() {
	cat <<EOF
usage: e2e/cluster/image.sh [options] NAME:TAG ROOTFS_DIR
       e2e/cluster/image.sh [options] NAME:TAG BINARY...
       e2e/cluster/image.sh [options] --archive FILE NAME:TAG

Builds a docker-archive tarball (one uncompressed layer, reproducible: sorted, owned by
root, mtime 0) and imports it with 'ctr -n k8s.io images import' into each running node's
containerd.

With --archive the image is FILE, a docker-archive a builder wrote (buildah push
IMAGE docker-archive:FILE:NAME:TAG), copied to --out and imported as it is.
With ROOTFS_DIR the layer is that directory as it is. With BINARY... each binary goes to
/<its name> with the shared libraries 'ldd' names (none for a static binary), and the layer
gets /etc/passwd, /etc/group (root, nonroot 65532, nobody 65534) and /tmp.

options:
  --entrypoint PATH  image entrypoint (default: /<first BINARY>; none for ROOTFS_DIR)
  --env K=V          add to the image environment (repeatable; PATH is always set)
  --ca-certs         also copy the host's /etc/ssl/certs/ca-certificates.crt
  --out FILE         where to write the tarball (default: $STATE_DIR/images/NAME_TAG.tar)
  --node NODE        import into this node only (repeatable; default: every running node)
  --no-import        only write the tarball
  --archive FILE     import this docker-archive instead of building one
EOF
}

ENTRYPOINT=
ENVS=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
CA=0
OUT=
IMPORT=1
NODES=()
ARCHIVE=
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--entrypoint) ENTRYPOINT=$2; shift ;;
	--env) ENVS+=("$2"); shift ;;
	--ca-certs) CA=1 ;;
	--out) OUT=$2; shift ;;
	--node) NODES+=("$2"); shift ;;
	--no-import) IMPORT=0 ;;
	--archive) ARCHIVE=$2; shift ;;
	--) shift; break ;;
	-*) echo "image.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
if [[ -n $ARCHIVE ]]; then
	(($# == 1)) || { usage >&2; exit 2; }
else
	(($# >= 2)) || { usage >&2; exit 2; }
fi
REF=$1
shift
[[ $REF == *:* ]] || die "image name needs a tag: $REF"
OUT=${OUT:-$STATE_DIR/images/$(tr '/:' '__' <<<"$REF").tar}

json_strings() {
	local first=1 s
	printf '['
	for s in "$@"; do
		((first)) || printf ','
		first=0
		s=${s//\\/\\\\}
		printf '"%s"' "${s//\"/\\\"}"
	done
	printf ']'
}

# build_archive: the tarball at $OUT, from the rootfs or binaries in "$@".
build_archive() {
	WORK=$(mktemp -d /tmp/fd-image.XXXXXX)
	trap 'rm -rf "$WORK"' EXIT
	ROOT=$WORK/rootfs
	mkdir -p "$ROOT"

	if (($# == 1)) && [[ -d $1 ]]; then
		cp -a "$1/." "$ROOT/"
	else
		mkdir -p "$ROOT/etc" "$ROOT/tmp"
		chmod 1777 "$ROOT/tmp"
		printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' \
			'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' >"$ROOT/etc/passwd"
		printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' 'nobody:x:65534:' >"$ROOT/etc/group"
		for bin in "$@"; do
			[[ -x $bin && -f $bin ]] || die "not an executable file: $bin"
			cp "$bin" "$ROOT/$(basename "$bin")"
			# A dynamic binary needs its loader and libraries at the same paths.
			{ ldd "$bin" 2>/dev/null || true; } | { grep -o '/[^ ]*' || true; } | while read -r lib; do
				[[ -e $lib ]] || continue
				mkdir -p "$ROOT$(dirname "$lib")"
				cp -L "$lib" "$ROOT$lib"
			done
		done
		ENTRYPOINT=${ENTRYPOINT:-/$(basename "$1")}
		if ((CA)); then
			mkdir -p "$ROOT/etc/ssl/certs"
			cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/"
		fi
	fi

	# The layer, made the same way every time so that the same files give the same digest.
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$ROOT" -cf "$WORK/layer.tar" .
	diff_id=$(sha256sum "$WORK/layer.tar" | cut -d' ' -f1)

	ep=null
	[[ -n $ENTRYPOINT ]] && ep=$(json_strings "$ENTRYPOINT")
	config=$(printf '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Env":%s,"Entrypoint":%s,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"firedrill e2e/cluster/image.sh"}]}' \
		"$(json_strings "${ENVS[@]}")" "$ep" "$diff_id")
	config_id=$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)

	A=$WORK/archive
	mkdir -p "$A/$diff_id"
	mv "$WORK/layer.tar" "$A/$diff_id/layer.tar"
	printf '%s' "$config" >"$A/$config_id.json"
	printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' "$config_id" "$REF" "$diff_id" >"$A/manifest.json"
	mkdir -p "$(dirname "$OUT")"
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$A" -cf "$OUT.tmp" .
	mv -f "$OUT.tmp" "$OUT"
	log "$REF: $OUT ($(du -h "$OUT" | cut -f1), image id sha256:${config_id:0:12})"
}

if [[ -n $ARCHIVE ]]; then
	[[ -s $ARCHIVE ]] || die "no archive $ARCHIVE"
	mkdir -p "$(dirname "$OUT")"
	[[ $ARCHIVE -ef $OUT ]] || cp "$ARCHIVE" "$OUT"
	log "$REF: $OUT ($(du -h "$OUT" | cut -f1))"
else
	build_archive "$@"
fi

((IMPORT)) || exit 0
((${#NODES[@]})) || mapfile -t NODES < <(node_names)
archive=$(sha256sum "$OUT" | cut -c1-32)
imported=0
for n in "${NODES[@]}"; do
	sock=$(node_sock "$n")
	if ! [[ -S $sock ]] || ! ctr -a "$sock" version >/dev/null 2>&1; then
		log "$REF: $n has no running containerd, skipped"
		continue
	fi
	# The archive's digest, kept as a label, tells an image already imported as it is now.
	if ctr -a "$sock" -n k8s.io images ls "name==$REF" | grep -q "firedrill.dev/archive=$archive"; then
		log "$REF: already in $n"
		imported=$((imported + 1))
		continue
	fi
	ctr -a "$sock" -n k8s.io images import "$OUT" >/dev/null
	ctr -a "$sock" -n k8s.io images label "$REF" "firedrill.dev/archive=$archive" >/dev/null
	imported=$((imported + 1))
	log "$REF: imported into $n"
done
((imported)) || log "$REF: imported into no node (is the cluster up?)"
