#!/usr/bin/env bash
# deb.sh — builds dist/mabd_<version>_<arch>.deb with nfpm (a Go tool of
# go.mod: `go tool nfpm`) from packaging/nfpm.yaml. `make deb` runs it after
# `make build`; it packages what is in bin/ and builds nothing itself:
#
#   bin/mabd, bin/mabd-daemon, bin/mabd-build
#                             `make build` (VERSION compiled in)
#   bin/buildkitd, buildctl   `make deps` (scripts/buildkit-deps.sh): must be
#                             the BuildKit version go.mod pins
#
# It generates into dist/deb/ the files that differ from the ones
# `make install` uses: mabd.service and user/mabd.service with
# ExecStart=/usr/bin/mabd, and mabd.toml with [buildkit] binary =
# "/usr/lib/mabd/buildkitd".
# Packages of other versions in dist/ are deleted first.
#
# The package version comes from VERSION (default: git describe --tags
# --always --dirty, as in the Makefile), converted to a Debian version:
#   v1.2.3                    1.2.3
#   v1.2.3-rc1                1.2.3~rc1          (sorts before 1.2.3)
#   v1.2.3-4-gabc1234         1.2.3+git4.gabc1234 (after 1.2.3)
#   abc1234 (no tag)          0.0.0~gitabc1234
#   …-dirty                   …+dirty / ….dirty
#   dev (no git)              0.0.0~dev
#
#   scripts/deb.sh                  build the package; prints its path last
#   scripts/deb.sh --deb-version    print only the Debian version of VERSION
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO=${GO:-go}
command -v "$GO" >/dev/null || GO=/usr/local/go/bin/go
DIST=dist
GEN=$DIST/deb

say() { echo "deb: $*"; }
die() { echo "deb: error: $*" >&2; exit 1; }

# debversion GITVERSION prints the Debian version of a `git describe` output.
debversion() {
	local v=$1 dirty="" base post="" out
	if [[ $v == *-dirty ]]; then
		dirty=1
		v=${v%-dirty}
	fi
	# An abbreviated commit (no tag) unless a tag has that name.
	if [[ $v =~ ^[0-9a-f]{7,40}$ ]] && ! git -C "$ROOT" rev-parse -q --verify "refs/tags/$v" >/dev/null 2>&1; then
		out=0.0.0~git$v
		[[ -z $dirty ]] || out+=.dirty
	elif [[ $v =~ ^v?([0-9][A-Za-z0-9.+~-]*)$ ]]; then
		base=${BASH_REMATCH[1]}
		# Commits after the tag: -<count>-g<sha>.
		if [[ $base =~ ^(.*)-([0-9]+)-(g[0-9a-f]+)$ ]]; then
			base=${BASH_REMATCH[1]}
			post=git${BASH_REMATCH[2]}.${BASH_REMATCH[3]}
		fi
		base=${base//-/\~} # v1.2.3-rc1: a pre-release
		out=$base
		if [[ -n $post ]]; then
			out+=+$post
			[[ -z $dirty ]] || out+=.dirty
		elif [[ -n $dirty ]]; then
			out+=+dirty
		fi
	elif [[ $v =~ ^[A-Za-z0-9.+~]+$ ]]; then
		out=0.0.0~$v
		[[ -z $dirty ]] || out+=.dirty
	else
		die "cannot turn version '$1' into a Debian version"
	fi
	[[ $out =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || die "'$out' (from '$1') is not a valid Debian version"
	if command -v dpkg >/dev/null; then
		dpkg --validate-version "$out" 2>/dev/null || die "dpkg rejects version '$out' (from '$1')"
	fi
	echo "$out"
}

cd "$ROOT"
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
DEBVERSION=$(debversion "$VERSION")
if [[ ${1:-} == --deb-version ]]; then
	echo "$DEBVERSION"
	exit 0
fi
[[ $# -eq 0 ]] || die "usage: $0 [--deb-version]"

ARCH=$("$GO" env GOARCH)

# What goes into the package.
[[ -x bin/mabd ]] || die "bin/mabd is missing: run make build (or make deb)"
for p in mabd-daemon mabd-build; do
	[[ -x bin/$p ]] || die "bin/$p is missing: run make build (or make deb)"
done
v=$(bin/mabd version) || die "bin/mabd does not run"
[[ $v == "mabd $VERSION "* ]] || die "bin/mabd is not version $VERSION ($v): run make build VERSION=$VERSION"
bk=$(awk '$1 == "github.com/moby/buildkit" { print $2; exit }' go.mod)
[[ -n $bk ]] || die "go.mod does not require github.com/moby/buildkit"
for t in buildkitd buildctl; do
	[[ -x bin/$t ]] || die "bin/$t is missing: run make deps"
	tv=$(bin/$t --version) || die "bin/$t does not run"
	[[ $tv == *" $bk"* ]] || die "bin/$t is not BuildKit $bk ($tv): run make deps"
done

mkdir -p "$GEN"
# The unit with the packaged binary's path.
sed 's#^ExecStart=/usr/local/bin/mabd daemon$#ExecStart=/usr/bin/mabd daemon#' \
	packaging/systemd/mabd.service >"$GEN/mabd.service.tmp"
grep -qx 'ExecStart=/usr/bin/mabd daemon' "$GEN/mabd.service.tmp" ||
	die "packaging/systemd/mabd.service has no 'ExecStart=/usr/local/bin/mabd daemon' line to rewrite"
! grep -q /usr/local/bin/mabd <(grep -v '^#' "$GEN/mabd.service.tmp") ||
	die "$GEN/mabd.service still runs /usr/local/bin/mabd"
mv -f "$GEN/mabd.service.tmp" "$GEN/mabd.service"
# The user unit (rootless mode) likewise.
mkdir -p "$GEN/user"
sed 's#^ExecStart=/usr/local/bin/mabd daemon$#ExecStart=/usr/bin/mabd daemon#' \
	packaging/systemd/user/mabd.service >"$GEN/user/mabd.service"
grep -qx 'ExecStart=/usr/bin/mabd daemon' "$GEN/user/mabd.service" ||
	die "packaging/systemd/user/mabd.service has no 'ExecStart=/usr/local/bin/mabd daemon' line to rewrite"

# The configuration with BuildKit's packaged path.
sed 's#^\# binary = ""$#\# The Debian package installs BuildKit in /usr/lib/mabd, where mabd does\n\# not look by itself.\nbinary = "/usr/lib/mabd/buildkitd"#' \
	packaging/mabd.toml >"$GEN/mabd.toml.tmp"
grep -qx 'binary = "/usr/lib/mabd/buildkitd"' "$GEN/mabd.toml.tmp" ||
	die "packaging/mabd.toml has no '# binary = \"\"' line to set"
bin/mabd daemon --check-config --config "$GEN/mabd.toml.tmp" >/dev/null ||
	die "the packaged configuration $GEN/mabd.toml.tmp is invalid"
mv -f "$GEN/mabd.toml.tmp" "$GEN/mabd.toml"

deb=$DIST/mabd_${DEBVERSION}_${ARCH}.deb
# One package in dist/: those of earlier versions go (each is ~80 MB).
rm -f "$DIST"/mabd_*_"$ARCH".deb
# Reproducible timestamps: the last commit's time.
if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH MABD_DEB_VERSION=$DEBVERSION MABD_DEB_ARCH=$ARCH
say "packaging mabd $VERSION as $DEBVERSION ($ARCH)"
"$GO" tool nfpm pkg --packager deb --config packaging/nfpm.yaml --target "$DIST/" >&2
[[ -f $deb ]] || die "nfpm did not write $deb"
say "$(du -h "$deb" | cut -f1) $deb"
echo "$deb"
