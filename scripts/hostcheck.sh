#!/usr/bin/env bash
# hostcheck.sh before|after DIR — `make test`'s guard that the suite leaves
# the host as it found it (README, "Hermetic"): `before` records the host's
# binfmt_misc table, its mounts, its users and subordinate ids in DIR;
# `after` records them again and fails on any difference, and on any
# process the suite left running: one started since `before`, orphaned
# (its parent is PID 1) and of the kinds the tests start (QEMU, BuildKit,
# runc, mabd, the registry, sleep, sh).
set -euo pipefail

mode=${1:?before or after}
dir=${2:?a directory}

snapshot() {
	local out=$1
	mkdir -p "$out"
	# The host's table: every entry's name and contents.
	if [[ -d /proc/sys/fs/binfmt_misc ]]; then
		for f in /proc/sys/fs/binfmt_misc/*; do
			[[ -f $f && ${f##*/} != register ]] || continue
			echo "== ${f##*/}"
			cat "$f"
		done >"$out/binfmt"
	fi
	# Mount points and filesystem types of this (the host's) mount namespace.
	awk '{for (i = 7; $i != "-"; i++); print $5, $(i + 1)}' /proc/self/mountinfo | sort >"$out/mounts"
	cut -d: -f1,3 /etc/passwd | sort >"$out/users"
	cut -d: -f1,3 /etc/group | sort >"$out/groups"
	for f in /etc/subuid /etc/subgid; do
		if [[ -e $f ]]; then echo "$f: $(sha256sum <"$f")"; else echo "$f: absent"; fi
	done >"$out/subids"
}

case $mode in
before)
	rm -rf "$dir"
	snapshot "$dir/before"
	date +%s >"$dir/start"
	;;
after)
	snapshot "$dir/after"
	bad=0
	for what in binfmt mounts users groups subids; do
		if ! diff -u "$dir/before/$what" "$dir/after/$what" >"$dir/$what.diff"; then
			echo "hostcheck: the suite changed the host's $what:" >&2
			cat "$dir/$what.diff" >&2
			bad=1
		fi
	done
	since=$(($(date +%s) - $(cat "$dir/start")))
	left=$(ps -eo pid=,ppid=,etimes=,args= | awk -v since="$since" \
		'$2 == 1 && $3 <= since && $4 ~ /(qemu-|buildkit|runc|mabd|registry|(^|\/)sleep$|(^|\/)sh$)/')
	if [[ -n $left ]]; then
		echo "hostcheck: the suite left these processes running (pid ppid seconds command):" >&2
		echo "$left" >&2
		bad=1
	fi
	if ((bad)); then
		exit 1
	fi
	echo "hostcheck: the host is as the suite found it (binfmt_misc table, mounts, users, subordinate ids, no process left)"
	;;
*)
	echo "usage: hostcheck.sh before|after DIR" >&2
	exit 2
	;;
esac
