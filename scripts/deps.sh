#!/usr/bin/env bash
# deps.sh — install what mabd's build, tests and demo need on Debian 12 (bookworm).
# Run as root (`make deps`). Idempotent: a second run installs and downloads nothing.
#
# apt packages:
#   qemu-user-static  the qemu-<arch>-static emulators mabd registers with binfmt_misc
#   busybox-static    a static userland for test root filesystems
#   util-linux        unshare, mount, nsenter
#   binutils, file    readelf/file to identify ELF machines
#   ca-certificates   TLS for registry access
#   curl              the demo and tests talk HTTP to the registry and the control socket
#   systemd           for /lib/systemd/systemd-binfmt, systemd-analyze, and
#                     /lib/systemd/systemd, booted as PID 1 of TestSystemd's throwaway
#                     container; it is installed without systemd-sysv, so this machine's
#                     init (PID 1) is never changed
#   runc, skopeo      running containers and copying images
#   binutils-<triple> Debian's cross binutils, which assemble the tiny probes of
#                     `go generate ./emulator` (emulator/internal/tinyprobe) and
#                     which TestProbesReproducible runs to check them: one per
#                     family (mips64's assembles all six mips ABIs, powerpc64's ppc
#                     and ppc64le, sparc64's sparc and sparc32plus, x86-64's i386)
#
# Test fixtures (fixtures/ at the repo root, git-ignored): Debian's busybox-static for
# foreign architectures, extracted into fixtures/busybox/<debian-arch>/ and read by the
# Go package mabd/testing/fixtures.
#
# A second QEMU: Debian 13 (trixie)'s qemu-user (QEMU 10.0, static-pie emulators named
# qemu-<arch>), downloaded with a private apt configuration (its own sources list and
# lists directory: the system's apt sources are not changed) and extracted, not
# installed, into $QEMU2 (root-owned directories, so mabd trusts its emulators). The
# tests and `make bench` compare it with bookworm's QEMU 7.2 (mabd.emulatortest).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PKGS=(qemu-user-static busybox-static util-linux binutils file ca-certificates curl systemd runc skopeo time)
# Target triples of the cross binutils (package binutils-<triple>, tools <triple>-as
# and <triple>-ld, except x86-64's: x86_64-linux-gnu-as).
CROSS=(aarch64-linux-gnu alpha-linux-gnu arm-linux-gnueabihf hppa-linux-gnu m68k-linux-gnu
	mips64-linux-gnuabi64 powerpc64-linux-gnu riscv64-linux-gnu s390x-linux-gnu sh4-linux-gnu
	sparc64-linux-gnu x86-64-linux-gnu)
PKGS+=("${CROSS[@]/#/binutils-}")
# Debian architecture -> what `file` prints for its busybox (class, byte order, machine).
declare -A ELF=(
	[arm64]='ELF 64-bit LSB .*ARM aarch64'
	[armhf]='ELF 32-bit LSB .*ARM, EABI5'
	[ppc64el]='ELF 64-bit LSB .*PowerPC'
	[s390x]='ELF 64-bit MSB .*S/390'
	[i386]='ELF 32-bit LSB .*Intel 80386'
	[mips64el]='ELF 64-bit LSB .*MIPS'
)
ARCHES=(arm64 armhf ppc64el s390x i386 mips64el)
QEMU2=/opt/mabd/qemu-debian13
QEMU2_SUITE=trixie
export DEBIAN_FRONTEND=noninteractive

say() { echo "deps: $*"; }
die() { echo "deps: error: $*" >&2; exit 1; }
installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }
# fixture_ok ARCH: the extracted busybox exists and is an ELF for ARCH.
fixture_ok() {
	local bb=$ROOT/fixtures/busybox/$1/bin/busybox
	[[ -f $bb ]] && file -b "$bb" 2>/dev/null | grep -q "${ELF[$1]}"
}

# lists_have ARCH...: apt's package lists have busybox-static for every ARCH.
lists_have() {
	local n
	(($#)) || return 0
	n=$(apt-cache show --no-all-versions "${@/#/busybox-static:}" 2>/dev/null | grep -c '^Architecture:' || true)
	((n == $#))
}

command -v dpkg-query >/dev/null || die "needs a Debian system (dpkg, apt-get)"

missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
want=() # architectures whose busybox fixture is missing or wrong
for a in "${ARCHES[@]}"; do fixture_ok "$a" || want+=("$a"); done

# qemu2_ok: the second QEMU is extracted and its aarch64 emulator says it is QEMU 10 or later.
qemu2_ok() {
	local v
	v=$("$QEMU2/usr/bin/qemu-aarch64" --version 2>/dev/null | head -1) || return 1
	[[ $v =~ ^qemu-aarch64\ version\ ([0-9]+)\. ]] && ((BASH_REMATCH[1] >= 10))
}

# fetch_qemu2: download $QEMU2_SUITE's qemu-user with a private apt configuration and
# extract it into $QEMU2, replacing what was there only once the new tree is complete.
fetch_qemu2() {
	local tmp apt
	tmp=$(mktemp -d)
	chmod 0755 "$tmp"
	apt=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o "Dir::Etc::SourceParts=$tmp/sources.list.d"
		-o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache"
		-o "APT::Architectures=$(dpkg --print-architecture)"
		-o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false")
	mkdir -p "$tmp/sources.list.d" "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/deb"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $QEMU2_SUITE main" >"$tmp/sources.list"
	chmod 0777 "$tmp/deb" # apt-get download fetches as user _apt
	say "apt-get update ($QEMU2_SUITE, private lists in $tmp)"
	apt-get "${apt[@]}" update -qq || { rm -rf "$tmp"; die "apt-get update of $QEMU2_SUITE failed (above): check the network and /usr/share/keyrings/debian-archive-keyring.gpg (apt-get install debian-archive-keyring)"; }
	say "downloading $QEMU2_SUITE's qemu-user"
	(cd "$tmp/deb" && apt-get "${apt[@]}" download -qq qemu-user) || { rm -rf "$tmp"; die "apt-get download qemu-user from $QEMU2_SUITE failed (above)"; }
	mkdir -p "$(dirname "$QEMU2")"
	chmod 0755 "$(dirname "$QEMU2")"
	rm -rf "$QEMU2.new"
	dpkg-deb -x "$tmp"/deb/qemu-user_*.deb "$QEMU2.new" || { rm -rf "$tmp" "$QEMU2.new"; die "dpkg-deb -x of qemu-user failed"; }
	rm -rf "$tmp"
	chown -R root:root "$QEMU2.new"
	chmod -R go-w "$QEMU2.new"
	rm -rf "$QEMU2"
	mv "$QEMU2.new" "$QEMU2"
	qemu2_ok || die "$QEMU2/usr/bin/qemu-aarch64 does not run or is older than QEMU 10: $("$QEMU2/usr/bin/qemu-aarch64" --version 2>&1 | head -1)"
	say "$QEMU2/usr/bin: $("$QEMU2/usr/bin/qemu-aarch64" --version | head -1)"
}

need_qemu2=0
qemu2_ok || need_qemu2=1

if ((${#missing[@]} == 0 && ${#want[@]} == 0 && need_qemu2 == 0)); then
	say "apt packages installed; busybox fixtures present for ${ARCHES[*]}; $QEMU2 present"
	exit 0
fi
[[ $(id -u) -eq 0 ]] || die "run as root (missing: ${missing[*]} ${want[*]/#/busybox-static:} $( ((need_qemu2)) && echo "$QEMU2"))"

((need_qemu2 == 0)) || fetch_qemu2
if ((${#missing[@]} == 0 && ${#want[@]} == 0)); then
	say "apt packages installed; busybox fixtures present for ${ARCHES[*]}"
	exit 0
fi

# Each foreign architecture needs an apt source.
native=$(dpkg --print-architecture)
foreign=" $(dpkg --print-foreign-architectures | tr '\n' ' ') "
need_update=${#missing[@]}
for a in "${want[@]}"; do
	if [[ $a != "$native" && $foreign != *" $a "* ]]; then
		say "dpkg --add-architecture $a"
		dpkg --add-architecture "$a"
		need_update=1
	fi
done
((need_update)) || lists_have "${want[@]}" || need_update=1

if ((need_update)); then
	say "apt-get update"
	# A mirror mid-sync can fail some indexes (e.g. bookworm-security for one arch);
	# carry on, and fail below only if something we need is really unavailable.
	apt-get update -qq || say "warning: apt-get update had errors (above); continuing"
fi
lists_have "${want[@]}" || die "apt lacks busybox-static for one of: ${want[*]}"

if ((${#missing[@]})); then
	[[ -d /run/systemd/system ]] || say "note: systemd is not PID 1 here; installing only its tools"
	say "installing ${missing[*]}"
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
	say "apt packages already installed"
fi

for f in /usr/bin/qemu-aarch64-static /bin/busybox /lib/systemd/systemd-binfmt \
	/usr/bin/systemd-analyze /usr/sbin/runc /usr/bin/skopeo /usr/bin/readelf /usr/bin/file; do
	[[ -x $f ]] || die "$f missing after install"
done
for t in "${CROSS[@]}"; do
	for f in "/usr/bin/${t/x86-64/x86_64}-as" "/usr/bin/${t/x86-64/x86_64}-ld"; do
		[[ -x $f ]] || die "$f missing after install (binutils-$t)"
	done
done

if ((${#want[@]} == 0)); then
	say "busybox fixtures present for ${ARCHES[*]}"
	exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 0777 "$tmp" # apt-get download fetches as user _apt
say "downloading busybox-static for ${want[*]}"
(cd "$tmp" && apt-get download -qq "${want[@]/#/busybox-static:}")
for a in "${want[@]}"; do
	dest=$ROOT/fixtures/busybox/$a
	rm -rf "$dest"
	mkdir -p "$dest"
	dpkg-deb -x "$tmp"/busybox-static_*_"$a".deb "$dest"
	fixture_ok "$a" || die "$dest/bin/busybox is not a ${ELF[$a]} binary: $(file -b "$dest/bin/busybox" 2>&1)"
	say "fixtures/busybox/$a/bin/busybox: $(file -b "$dest/bin/busybox" | cut -d, -f1-2)"
done
