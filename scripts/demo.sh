#!/usr/bin/env bash
# demo.sh — mabd's main job on this host, end to end:
#   1. register every available foreign architecture (mabd install all),
#   2. show the health check (mabd status),
#   3. verify: a probe per architecture in an empty chroot, and a real
#      foreign sh from Debian's busybox-static in a chroot that holds nothing
#      else, so both work only through F handlers (mabd verify --rootfs),
#   4. run a foreign program without root in a private namespace (mabd exec).
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
rootfs_args=()
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
	rootfs_args+=(--rootfs "$arch=$rootfs")
done

echo "== mabd verify ${rootfs_args[*]}"
"$mabd" verify "${rootfs_args[@]}"

for arch in arm64 armhf ppc64el s390x; do
	echo "== $arch: chroot $work/$arch /bin/sh -c 'uname -m'"
	chroot "$work/$arch" /bin/sh -c 'echo "foreign sh says: uname -m = $(busybox uname -m)"'
done

chmod 0755 "$work" "$work/arm64" "$work/arm64/bin"
echo "== as nobody, in a private namespace: mabd exec --platform linux/arm64 -- busybox uname -m"
setpriv --reuid=65534 --regid=65534 --clear-groups "$mabd" exec --platform linux/arm64 -- "$work/arm64/bin/busybox" uname -m
echo "== done: foreign programs run on this $(uname -m) host"
