#!/usr/bin/env bash
# buildkit-deps.sh — what mabd's builder, `mabd build` and their tests need, on
# Debian 12 (bookworm), as root. Idempotent: a second run builds, installs and
# downloads nothing, and takes well under a second.
#
#   bin/buildkitd, bin/buildctl  BuildKit, built from the `tool` directives of
#                                go.mod (the version go.mod pins), rebuilt when
#                                missing or older than go.mod
#   runc                         the OCI runtime BuildKit's OCI worker runs steps with
#   uidmap                       newuidmap/newgidmap: the rootless daemon maps a user's
#                                subordinate ids into the builder's namespace with them
#   skopeo                       an independent registry client (the tests use it)
#   docker-registry              Debian's registry (distribution 2.8) for push tests:
#                                only its binary, extracted from the .deb to
#                                /usr/local/bin/docker-registry with `apt-get download`
#                                and `dpkg-deb -x`. The package itself is NOT
#                                installed, so no service, init script, unit, system
#                                user or /etc/docker/registry config (with htpasswd
#                                auth) appears, and nothing listens on port 5000: the
#                                tests run the binary with a config of their own.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO=${GO:-go}
command -v "$GO" >/dev/null || GO=/usr/local/go/bin/go
REGISTRY_BIN=${REGISTRY_BIN:-/usr/local/bin/docker-registry}
export DEBIAN_FRONTEND=noninteractive

say() { echo "buildkit-deps: $*"; }
die() { echo "buildkit-deps: error: $*" >&2; exit 1; }
installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

# bkversion prints the version of github.com/moby/buildkit that go.mod requires.
bkversion() { awk '$1 == "github.com/moby/buildkit" { print $2; exit }' "$ROOT/go.mod"; }

# build_tool NAME: builds bin/NAME from github.com/moby/buildkit/cmd/NAME when it
# is missing, older than go.mod or not the version go.mod requires.
build_tool() {
	local name=$1 out=$ROOT/bin/$1 ver
	ver=$(bkversion)
	[[ -n $ver ]] || die "go.mod does not require github.com/moby/buildkit"
	if [[ -x $out && $out -nt $ROOT/go.mod ]] && [[ $("$out" --version 2>/dev/null) == *" $ver"* ]]; then
		return 0
	fi
	say "building bin/$name (BuildKit $ver, from go.mod's tool directive)"
	mkdir -p "$ROOT/bin"
	(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -trimpath \
		-ldflags "-X github.com/moby/buildkit/version.Version=$ver" \
		-o "bin/$name.tmp" "github.com/moby/buildkit/cmd/$name")
	mv -f "$ROOT/bin/$name.tmp" "$out"
}

build_tool buildkitd
build_tool buildctl

missing=()
for p in runc skopeo uidmap; do installed "$p" || missing+=("$p"); done
if ((${#missing[@]})); then
	[[ $(id -u) -eq 0 ]] || die "run as root to install ${missing[*]}"
	say "installing ${missing[*]}"
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
		apt-get update -qq || say "warning: apt-get update had errors; continuing"
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	}
fi

if [[ ! -x $REGISTRY_BIN ]]; then
	[[ $(id -u) -eq 0 ]] || die "run as root to install $REGISTRY_BIN"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	chmod 0777 "$tmp" # apt-get download fetches as user _apt
	say "extracting docker-registry's binary to $REGISTRY_BIN (the package is not installed: no service)"
	if ! (cd "$tmp" && apt-get download -qq docker-registry 2>/dev/null); then
		apt-get update -qq || say "warning: apt-get update had errors; continuing"
		(cd "$tmp" && apt-get download -qq docker-registry)
	fi
	dpkg-deb -x "$tmp"/docker-registry_*.deb "$tmp/x"
	install -D -m 0755 "$tmp/x/usr/bin/docker-registry" "$REGISTRY_BIN"
fi

# Verify each.
v=$("$ROOT/bin/buildkitd" --version) || die "bin/buildkitd does not run"
[[ $v == *" $(bkversion)"* ]] || die "bin/buildkitd is not BuildKit $(bkversion): $v"
[[ $("$ROOT/bin/buildctl" --version) == *" $(bkversion)"* ]] || die "bin/buildctl does not run or is not BuildKit $(bkversion)"
runc --version >/dev/null 2>&1 || die "runc does not run"
for f in /usr/bin/newuidmap /usr/bin/newgidmap; do [[ -u $f ]] || die "$f missing or not setuid: apt-get install uidmap"; done
skopeo --version >/dev/null 2>&1 || die "skopeo does not run"
"$REGISTRY_BIN" --version >/dev/null 2>&1 || die "$REGISTRY_BIN does not run"
say "ok: $v; $(runc --version | head -1); $(skopeo --version); $("$REGISTRY_BIN" --version | cut -d' ' -f2-)"
