#!/usr/bin/env bash
# bench.sh — `make bench`: measure mabd against the tools it replaces on this
# machine (see bench/README.md). Prints one markdown table and writes the
# same figures as JSON (bench/results.json by default). Arguments are passed
# to the bench program: -quick for a smoke run, -rounds N, -idle 60s,
# -out FILE, -only 1,3 … (`make bench BENCHFLAGS=-quick`).
#
# Needs what `make deps build` provides (bin/mabd, bin/buildkitd,
# bin/buildctl, qemu-user-static, docker-registry, the busybox fixtures),
# and Linux >= 6.7 for private binfmt_misc instances. Run as root.
#
# Debian's update-binfmts is compared too; it is taken from the
# binfmt-support package with `apt-get download` and `dpkg-deb -x` into
# bench/.cache/ (git-ignored), never installed: installing binfmt-support
# would register every format of /usr/share/binfmts in the host's table.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=$ROOT/bench/.cache
GO=${GO:-go}
export PATH=/usr/local/go/bin:$PATH

say() { echo "bench: $*" >&2; }

[[ $(id -u) -eq 0 ]] || { say "error: run as root (chroot probes, BuildKit, the host's arm64 handler)"; exit 1; }
mkdir -p "$CACHE"

UB=$CACHE/binfmt-support/usr/sbin/update-binfmts
if [[ ! -x $UB ]]; then
	say "taking update-binfmts from Debian's binfmt-support package (apt-get download, dpkg-deb -x; not installed)"
	if (
		cd "$CACHE" &&
			rm -rf binfmt-support binfmt-support_*.deb &&
			apt-get download binfmt-support 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 &&
			dpkg-deb -x binfmt-support_*.deb binfmt-support
	); then
		say "update-binfmts: $UB"
	else
		say "warning: could not fetch binfmt-support; the update-binfmts rows will say n/a"
	fi
fi

say "building the bench program, the archutil helper and the Go hello-world"
(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -o "$CACHE/mabd-bench" ./bench)
(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -o "$CACHE/archutil-platforms" ./bench/archutil)
(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -trimpath -o "$CACHE/hello" ./bench/hello)

cd "$ROOT"
start=$(date +%s)
set +e
"$CACHE/mabd-bench" -root "$ROOT" -update-binfmts "$UB" -archutil "$CACHE/archutil-platforms" -hello "$CACHE/hello" "$@"
rc=$?
set -e
say "wall time $(($(date +%s) - start)) s (exit $rc)"
exit $rc
