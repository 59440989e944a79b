#!/usr/bin/env bash
# demo.sh — mabd's main job on this host, end to end:
#   1. register every available foreign architecture (mabd install all),
#   2. show the health check (mabd status),
#   3. verify: a probe per architecture in an empty chroot, and a real
#      foreign sh from Debian's busybox-static in a chroot that holds nothing
#      else, so both work only through F handlers (mabd verify --rootfs),
#   4. run a foreign program without root in a private namespace (mabd exec),
#   5. the article's build: a local registry (Debian's docker-registry on
#      127.0.0.1:5000) gets a two-platform busybox base image; `mabd daemon`
#      runs BuildKit; `mabd build` builds examples/hello for linux/amd64 and
#      linux/arm64 in one command and pushes 127.0.0.1:5000/demo:v1; the
#      manifest list and each platform's /arch are printed.
# Everything it starts (registry, daemon and its BuildKit) is stopped at the end.
# Run as root after `make deps build` (the Makefile's demo target does both).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mabd="$root/bin/mabd"

echo "== mabd install all"
"$mabd" install all

echo "== mabd status"
"$mabd" status || true

work="$(mktemp -d)"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
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

echo "== a local registry on 127.0.0.1:5000"
mkdir -p "$work/registry"
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:5000
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fsS http://127.0.0.1:5000/v2/ >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS http://127.0.0.1:5000/v2/ >/dev/null || { cat "$work/registry.log"; exit 1; }

echo "== base image: busybox for linux/amd64 and linux/arm64"
(cd "$root" && go run ./examples/base -registry 127.0.0.1:5000)

echo "== mabd daemon (BuildKit on /run/mabd/buildkitd.sock)"
printf '[verify]\ninterval = "0"\n' >"$work/mabd.toml"
"$mabd" daemon --config "$work/mabd.toml" --socket "$work/mabd.sock" --state-dir "$work/state" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
pids=("$daemon_pid" "${pids[@]}")
for _ in $(seq 600); do
	"$mabd" status --socket "$work/mabd.sock" 2>/dev/null | grep -q '^buildkit: v' && break
	kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log"; exit 1; }
	sleep 0.2
done
"$mabd" status --socket "$work/mabd.sock" | grep -A1 '^buildkit:'

echo "== mabd build --platform linux/amd64,linux/arm64 --push -t 127.0.0.1:5000/demo:v1 examples/hello"
"$mabd" build --progress plain --platform linux/amd64,linux/arm64 --push -t 127.0.0.1:5000/demo:v1 \
	--build-arg BASE=127.0.0.1:5000/busybox:latest "$root/examples/hello"

echo "== the manifest list of 127.0.0.1:5000/demo:v1"
skopeo inspect --raw --tls-verify=false docker://127.0.0.1:5000/demo:v1
echo
for arch in amd64 arm64; do
	skopeo copy -q --override-arch "$arch" --src-tls-verify=false docker://127.0.0.1:5000/demo:v1 "oci:$work/img-$arch:v1"
	for blob in "$work/img-$arch"/blobs/sha256/*; do
		if a=$(tar -xzOf "$blob" arch 2>/dev/null); then echo "linux/$arch image: /arch says $a"; fi
	done
done

echo "== done: foreign programs run on this $(uname -m) host, and one tag serves amd64 and arm64"
