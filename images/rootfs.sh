#!/bin/sh
# usage: rootfs.sh BIN_DIR FS_DIR
#
# Run by images/Containerfile's rootfs stage: lays out FS_DIR/<image> for each image, the
# image's programs in /usr/local/bin (the agent's nft in /usr/sbin, where it looks) with
# the shared libraries ldd names at their own paths, /etc/passwd and /etc/group (root,
# nonroot 65532, nobody 65534) and a world-writable /tmp. Nothing else: no shell.
set -eu
bin=$1
fs=$2

die() {
  echo "rootfs.sh: $*" >&2
  exit 1
}

# skeleton IMAGE: an empty root with users and /tmp.
skeleton() {
  root=$fs/$1
  mkdir -p "$root/etc" "$root/tmp" "$root/usr/local/bin"
  chmod 1777 "$root/tmp"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' \
    'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' >"$root/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' 'nobody:x:65534:' >"$root/etc/group"
}

# add IMAGE SRC DEST: the executable SRC at DEST in IMAGE, with its libraries.
add() {
  root=$fs/$1
  [ -f "$2" ] && [ -x "$2" ] || die "no executable $2 (was it built?)"
  mkdir -p "$root$(dirname "$3")"
  cp -L "$2" "$root$3"
  chmod 0755 "$root$3"
  # A dev build carries line tables (~100 MiB a binary); a pod never needs them.
  strip --strip-debug "$root$3"
  for lib in $(ldd "$2" 2>/dev/null | grep -o '/[^ ]*' || true); do
    [ -e "$lib" ] || continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}

for image in operator agent talk-server talk-load chaosctl; do
  skeleton "$image"
done
add operator "$bin/firedrill-operator" /usr/local/bin/firedrill-operator
add agent "$bin/firedrill-agent" /usr/local/bin/firedrill-agent
# The agent runs nft with a fixed argv and JSON on stdin, for what it cannot say over netlink.
add agent /usr/sbin/nft /usr/sbin/nft
add talk-server "$bin/talk-server" /usr/local/bin/talk-server
add talk-load "$bin/talk-load" /usr/local/bin/talk-load
add chaosctl "$bin/chaosctl" /usr/local/bin/chaosctl
for image in operator agent talk-server talk-load chaosctl; do
  echo "rootfs.sh: $image: $(du -sh "$fs/$image" | cut -f1)"
done
