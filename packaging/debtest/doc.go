// Package debtest holds the tests of mabd's Debian package (packaging/
// nfpm.yaml, packaging/deb/, scripts/deb.sh, `make deb`). It has no code of
// its own: see deb_test.go. The tests need root and dpkg, and one of them
// installs the package on this machine for real and purges it again.
package debtest
