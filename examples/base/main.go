// Command base pushes the base image of examples/hello to a local
// registry: a busybox image for linux/amd64 (the host's /bin/busybox, from
// Debian's busybox-static) and linux/arm64 (Debian's busybox-static:arm64,
// which `make deps` puts in fixtures/). No public registry is needed.
//
//	go run ./examples/base -registry 127.0.0.1:5000
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"mabd/testing/fixtures"
	"mabd/testing/registry"
)

func main() {
	addr := flag.String("registry", "127.0.0.1:5000", "registry to push to (plain HTTP)")
	repo := flag.String("repo", "busybox:latest", "repository and tag")
	flag.Parse()
	root, err := fixtures.Root()
	if err != nil {
		fail(err)
	}
	bases := []registry.Base{
		{Platform: "linux/amd64", Busybox: registry.HostBusybox},
		{Platform: "linux/arm64", Busybox: filepath.Join(root, "fixtures", "busybox", "arm64", "bin", "busybox")},
	}
	for _, b := range bases {
		if _, err := os.Stat(b.Busybox); err != nil {
			fail(fmt.Errorf("%w: run make deps", err))
		}
	}
	idx, err := registry.BusyboxIndex(bases...)
	if err != nil {
		fail(err)
	}
	ref := *addr + "/" + *repo
	if err := registry.PushIndex(ref, idx); err != nil {
		fail(err)
	}
	fmt.Println(ref)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "base:", err)
	os.Exit(1)
}
