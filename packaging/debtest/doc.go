// Package debtest holds the tests of mabd's Debian package (packaging/
// nfpm.yaml, packaging/deb/, scripts/deb.sh, `make deb`) and of its
// systemd units under a real systemd. It has no code of its own.
//
// deb_test.go builds the package once per run (`make deb`), inspects it,
// installs it on this machine for real and purges it again, and runs the
// maintainer scripts in a private mount namespace.
//
// systemd_test.go (TestSystemd) boots the host's own systemd as PID 1 of a
// throwaway copy of this system (container_test.go: new user, pid, mount,
// uts, ipc, net and cgroup namespaces over an overlay of /, with a private
// binfmt_misc instance proven private before systemd starts), installs the
// package there and checks the service end to end: readiness and STATUS=,
// reload, restart after kill -9 and after a watchdog timeout, socket
// activation, and repair after systemd-binfmt flushes the table. The host's
// binfmt_misc table, mounts and dpkg database are left as they were.
//
// The tests need root, dpkg, systemd 252 or newer (its binaries; PID 1 may
// be anything), util-linux's nsenter, curl, and Linux 6.7 or newer; a
// missing one fails the test with what to install.
package debtest
