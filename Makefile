# mabd — see README.md. Every target runs as root on Debian 12.
SHELL := /bin/bash
GO ?= go
export PATH := /usr/local/go/bin:$(PATH)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X mabd/internal/cli.Version=$(VERSION)
PREFIX ?= /usr/local
# How many inputs each fuzz target tries inside `make test`. A count, not a
# duration: Go 1.26's fuzz coordinator races a wall-clock -fuzztime and
# fails now and then with "context deadline exceeded" and no crasher
# (golang/go#75804). `make fuzz FUZZTIME=5000000x` for a longer run.
FUZZTIME ?= 200000x

.PHONY: all deps build test unit fuzz demo install deb clean bench

all: build

# deps installs the apt packages and fetches the foreign busybox fixtures.
deps:
	bash scripts/deps.sh
	bash scripts/buildkit-deps.sh

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/mabd ./cmd/mabd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/mabd-daemon ./cmd/mabd-daemon
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/mabd-build ./cmd/mabd-build

# test: the whole suite (as root): unit, integration in private binfmt_misc
# instances, and a short fuzz run of each parser; scripts/hostcheck.sh
# fails it if the host is not left as it was found (its binfmt_misc table,
# mounts, users, subordinate ids, no process left running).
test: deps build
	bash scripts/hostcheck.sh before .hostcheck
	$(MAKE) --no-print-directory unit fuzz
	bash scripts/hostcheck.sh after .hostcheck

unit:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./binfmt
	$(GO) test -run '^$$' -fuzz '^FuzzParseEntry$$' -fuzztime $(FUZZTIME) ./binfmt
	$(GO) test -run '^$$' -fuzz '^FuzzLookup$$' -fuzztime 20000x ./binfmt
	$(GO) test -run '^$$' -fuzz '^FuzzLoadConfig$$' -fuzztime 20000x ./daemon
	$(GO) test -run '^$$' -fuzz '^FuzzReadResponse$$' -fuzztime 20000x ./daemon/api
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 20000x ./internal/tomlcheck
	$(GO) test -run '^$$' -fuzz '^FuzzParseSpecs$$' -fuzztime 20000x ./builder/build
	$(GO) test -run '^$$' -fuzz '^FuzzCountConnected$$' -fuzztime 20000x ./builder
	$(GO) test -run '^$$' -fuzz '^FuzzStaticFromHeaders$$' -fuzztime 20000x ./emulator

# demo: the main job end to end on this host: register every available
# foreign architecture, then run a foreign sh through it.
demo: deps build
	bash scripts/demo.sh

# install: mabd and the pinned buildkitd and buildctl beside it, the systemd
# units and the default configuration (kept if one exists). Then:
# systemctl daemon-reload && systemctl enable --now mabd.
install: deps build
	install -D -m 0755 bin/mabd $(DESTDIR)$(PREFIX)/bin/mabd
	install -D -m 0755 bin/mabd-daemon $(DESTDIR)$(PREFIX)/bin/mabd-daemon
	install -D -m 0755 bin/mabd-build $(DESTDIR)$(PREFIX)/bin/mabd-build
	install -D -m 0755 bin/buildkitd $(DESTDIR)$(PREFIX)/bin/buildkitd
	install -D -m 0755 bin/buildctl $(DESTDIR)$(PREFIX)/bin/buildctl
	install -D -m 0644 packaging/systemd/mabd.service $(DESTDIR)/lib/systemd/system/mabd.service
	install -D -m 0644 packaging/systemd/mabd.socket $(DESTDIR)/lib/systemd/system/mabd.socket
	install -D -m 0644 packaging/systemd/user/mabd.service $(DESTDIR)/usr/lib/systemd/user/mabd.service
	test -e $(DESTDIR)/etc/mabd/mabd.toml || install -D -m 0644 packaging/mabd.toml $(DESTDIR)/etc/mabd/mabd.toml

# deb: dist/mabd_<version>_<arch>.deb (nfpm, a go.mod tool) with mabd, the
# BuildKit of `make deps` in /usr/lib/mabd, the units and the configuration.
# See scripts/deb.sh and packaging/nfpm.yaml.
deb: build
	VERSION='$(VERSION)' GO='$(GO)' bash scripts/deb.sh

# bench: mabd against systemd-binfmt, update-binfmts, BuildKit's archutil and
# buildctl; the daemon's latency and footprint (bench/README.md). Not part of
# `make test`. BENCHFLAGS=-quick for a smoke run.
bench: deps build
	bash scripts/bench.sh $(BENCHFLAGS)

clean:
	rm -rf bin
