// Command genprobes builds the probe program (../probe) for every
// architecture package emulator embeds a probe for, compresses each build
// with gzip and writes them, with a manifest, to a directory:
//
//	go run ./internal/genprobes [-o probes]
//
// It is run by `go generate ./emulator` (see emulator/probe.go). The output
// is reproducible: the same Go release gives the same bytes on any machine,
// which emulator's tests check by regenerating into a temporary directory.
//
// Each probe is built with
//
//	CGO_ENABLED=0 GOOS=linux GOARCH=<goarch> go build -trimpath -buildvcs=false -ldflags="-s -w -buildid="
//
// with every architecture variable (GOAMD64, GO386, GOARM, GOARM64,
// GOPPC64, GORISCV64, GOMIPS, GOMIPS64) pinned to the oldest level Go
// supports (GOARM=7, so that the arm probe matches linux/arm/v7), and with
// GOFLAGS, GOEXPERIMENT and GOFIPS140 cleared, so nothing in the caller's
// environment changes the result. -buildvcs=false keeps the commit out of
// the binaries; otherwise every commit would change them.
//
// The output directory gets <goarch>.gz for each architecture (gzip, best
// compression, no name, no modification time) and manifest.txt:
//
//	# comment lines
//	go go1.26.8
//	<sha256 of the .gz file in hex>  <goarch>.gz
//	...
package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"mabd/binfmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
)

// probePkg is the import path of the probe program.
const probePkg = "mabd/emulator/internal/probe"

// target is one architecture to build for, and the identity its ELF files
// must have.
type target struct {
	goarch string
	elf    binfmt.ELFIdentity
}

// targets are the architectures of binfmt's table that Go builds for, in
// the order of the manifest (by GOARCH).
var targets = func() []target {
	var out []target
	for _, a := range binfmt.Arches() {
		if g := a.GOARCH(); g != "" {
			out = append(out, target{g, a.ELF()})
		}
	}
	slices.SortFunc(out, func(a, b target) int { return strings.Compare(a.goarch, b.goarch) })
	return out
}()

// pinnedEnv is added to the environment of every build; later entries win
// over the caller's.
var pinnedEnv = []string{
	"CGO_ENABLED=0",
	"GOOS=linux",
	"GOFLAGS=",
	"GOEXPERIMENT=",
	"GOFIPS140=off",
	"GOTOOLCHAIN=local",
	"GOWORK=off",
	"GOAMD64=v1",
	"GO386=sse2",
	"GOARM=7",
	"GOARM64=v8.0",
	"GOPPC64=power8",
	"GORISCV64=rva20u64",
	"GOMIPS=hardfloat",
	"GOMIPS64=hardfloat",
}

func main() {
	out := flag.String("o", "probes", "output `directory`")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: genprobes [-o dir]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := generate(*out); err != nil {
		fmt.Fprintln(os.Stderr, "genprobes:", err)
		os.Exit(1)
	}
}

// generate builds every target and writes the probes and the manifest to
// dir.
func generate(dir string) error {
	gotool, err := goTool()
	if err != nil {
		return err
	}
	version, err := goVersion(gotool)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "genprobes-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	gz := make([][]byte, len(targets))
	errs := make([]error, len(targets))
	sem := make(chan struct{}, max(runtime.NumCPU(), 2))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			gz[i], errs[i] = buildOne(gotool, tmp, t)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	var manifest strings.Builder
	manifest.WriteString("# Probe programs of package mabd/emulator, built from ./internal/probe by\n")
	manifest.WriteString("# ./internal/genprobes (go generate ./emulator). DO NOT EDIT.\n")
	manifest.WriteString("# Lines: the Go release, then the sha256 and name of each file.\n")
	fmt.Fprintf(&manifest, "go %s\n", version)
	for i, t := range targets {
		name := t.goarch + ".gz"
		sum := sha256.Sum256(gz[i])
		fmt.Fprintf(&manifest, "%s  %s\n", hex.EncodeToString(sum[:]), name)
		if err := writeFile(filepath.Join(dir, name), gz[i]); err != nil {
			return err
		}
	}
	return writeFile(filepath.Join(dir, "manifest.txt"), []byte(manifest.String()))
}

// buildOne builds the probe for t in tmp, checks its ELF header and
// returns it compressed.
func buildOne(gotool, tmp string, t target) ([]byte, error) {
	bin := filepath.Join(tmp, t.goarch)
	cmd := exec.Command(gotool, "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -buildid=", "-o", bin, probePkg)
	cmd.Env = append(os.Environ(), pinnedEnv...)
	cmd.Env = append(cmd.Env, "GOARCH="+t.goarch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build %s for GOARCH=%s: %w\n%s", probePkg, t.goarch, err, out)
	}
	raw, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("read the %s probe %s: %w", t.goarch, bin, err)
	}
	if f.Machine != t.elf.Machine || f.Class != t.elf.Class || f.Data != t.elf.Data || f.Type != elf.ET_EXEC {
		return nil, fmt.Errorf("the %s probe %s is %v %v %v %v, want %v %v %v ET_EXEC",
			t.goarch, bin, f.Machine, f.Class, f.Data, f.Type, t.elf.Machine, t.elf.Class, t.elf.Data)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("the %s probe %s is dynamically linked", t.goarch, bin)
		}
	}
	return compress(raw)
}

// compress gzips b reproducibly: best compression, an empty header (no
// name, no comment, modification time 0).
func compress(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// goTool returns the go command to build with: $GOROOT/bin/go when GOROOT
// is set (go generate and go run set it), else go from $PATH.
func goTool() (string, error) {
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("find the go command: %w", err)
	}
	return p, nil
}

// goVersion returns the release of the go command, e.g. "go1.26.8".
func goVersion(gotool string) (string, error) {
	cmd := exec.Command(gotool, "env", "GOVERSION")
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s env GOVERSION: %w: %s", gotool, err, bytes.TrimSpace(stderr.Bytes()))
	}
	v := strings.TrimSpace(string(out))
	if v == "" || strings.ContainsAny(v, " \t\n") {
		return "", fmt.Errorf("%s env GOVERSION: unexpected output %q", gotool, out)
	}
	return v, nil
}

// writeFile replaces path with b, atomically.
func writeFile(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = io.Copy(f, bytes.NewReader(b))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
