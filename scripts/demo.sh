#!/usr/bin/env bash
# demo.sh — mabd's main job on this host, end to end:
#   1. register every available foreign architecture (mabd install all),
#   2. show the health check (mabd status),
#   3. run a real foreign sh from Debian's busybox-static in a chroot that
#      holds nothing else, so it works only through an F handler.
# Run as root after `make deps build` (the Makefile's demo target does both).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mabd="$root/bin/mabd"

echo "== mabd install all"
"$mabd" install all

echo "== mabd status"
"$mabd" status || true

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for arch in arm64 armhf ppc64el s390x; do
	bb="$root/fixtures/busybox/$arch/bin/busybox"
	if [[ ! -x "$bb" ]]; then
		echo "missing $bb: run make deps" >&2
		exit 1
	fi
	rootfs="$work/$arch"
	mkdir -p "$rootfs/bin"
	cp "$bb" "$rootfs/bin/busybox"
	ln -s busybox "$rootfs/bin/sh"
	echo "== $arch: chroot $rootfs /bin/sh -c 'uname -m'"
	chroot "$rootfs" /bin/sh -c 'echo "foreign sh says: uname -m = $(busybox uname -m)"'
done
echo "== done: foreign programs run on this $(uname -m) host"
