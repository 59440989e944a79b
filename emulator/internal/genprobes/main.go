// Command genprobes generates the probe programs package emulator embeds,
// and a manifest of them, into a directory:
//
//	go run ./internal/genprobes [-o probes] [-go=false]
//
// It is run by `go generate ./emulator` (see emulator/probe.go). The output
// is reproducible: the same Go release and the same binutils give the same
// bytes on any machine, which emulator's tests check by regenerating into
// a temporary directory.
//
// Two kinds of probe:
//
//   - <qemu-arch>.elf, the tiny probes: ../tinyprobe's GNU as sources (one
//     per family), assembled and linked with Debian 12's cross binutils
//     (<triple>-as, <triple>-ld) for every architecture of binfmt's table
//     that they can target (see asmTargets in asm.go), a few hundred bytes
//     each: uname(2) and the machine printed. emulator.Probe runs them.
//     loongarch64, which has no binutils in Debian 12, gets the same
//     program encoded by loong64.go. Each is linked with
//
//     <triple>-ld --fatal-warnings -N -s --build-id=none -T probe.ld -m <emulation>
//
//     and checked against the table: its ELF identity, the magic and mask
//     that select it, one PT_LOAD segment, no interpreter. They are stored
//     as they are (no compression: they are smaller than a gzip header
//     would save).
//
//   - <goarch>.gz, the Go probe (../probe), for every architecture of the
//     table that Go builds for (those with a GOARCH): emulator.Workload and
//     emulator.Bench run it, and emulator.Probe where there is no tiny
//     probe (loong64). Each is built with
//
//     CGO_ENABLED=0 GOOS=linux GOARCH=<goarch> go build -trimpath -buildvcs=false -ldflags="-s -w -buildid="
//
//     with every architecture variable (GOAMD64, GO386, GOARM, GOARM64,
//     GOPPC64, GORISCV64, GOMIPS, GOMIPS64) pinned to the oldest level Go
//     supports (GOARM=7, so that the arm probe matches linux/arm/v7), and
//     with GOFLAGS, GOEXPERIMENT and GOFIPS140 cleared, so nothing in the
//     caller's environment changes the result. -buildvcs=false keeps the
//     commit out of the binaries; otherwise every commit would change them.
//     They are gzipped (best compression, no name, no modification time).
//
// -go=false leaves the Go probes out (and the go line of the manifest):
// the tests' quick check of the tiny probes.
//
// The manifest, manifest.txt:
//
//	# comment lines
//	go go1.26.8
//	binutils <triple> <release>
//	...
//	<sha256 of the file in hex>  <goarch>.gz
//	...
//	<sha256 of the file in hex>  <qemu-arch>.elf
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
	"maps"
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
	withGo := flag.Bool("go", true, "build the Go probes too")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: genprobes [-o dir] [-go=false]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := generate(*out, *withGo); err != nil {
		fmt.Fprintln(os.Stderr, "genprobes:", err)
		os.Exit(1)
	}
}

// generate builds every probe (the Go ones only if withGo) and writes
// them and the manifest to dir.
func generate(dir string, withGo bool) error {
	gotool, err := goTool()
	if err != nil {
		return err
	}
	src, err := sourceDir(gotool)
	if err != nil {
		return err
	}
	versions, err := checkTools()
	if err != nil {
		return err
	}
	var version string
	if withGo {
		if version, err = goVersion(gotool); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "genprobes-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// One job per probe: the Go builds, then the tiny ones.
	var names []string
	var jobs []func() ([]byte, error)
	if withGo {
		for _, t := range targets {
			names = append(names, t.goarch+".gz")
			jobs = append(jobs, func() ([]byte, error) { return buildOne(gotool, tmp, t) })
		}
	}
	tiny := map[string]func() ([]byte, error){loongTarget: func() ([]byte, error) {
		b, err := loong64Probe()
		if err == nil {
			err = checkTiny(loongTarget, b)
		}
		return b, err
	}}
	for _, t := range asmTargets {
		tiny[t.arch] = func() ([]byte, error) { return assemble(src, tmp, t) }
	}
	for _, arch := range slices.Sorted(maps.Keys(tiny)) {
		names = append(names, arch+".elf")
		jobs = append(jobs, tiny[arch])
	}
	files := make([][]byte, len(jobs))
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, max(runtime.NumCPU(), 2))
	var wg sync.WaitGroup
	for i, job := range jobs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			files[i], errs[i] = job()
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}

	var manifest strings.Builder
	manifest.WriteString("# Probe programs of package mabd/emulator, generated by ./internal/genprobes\n")
	manifest.WriteString("# (go generate ./emulator). DO NOT EDIT.\n")
	manifest.WriteString("# <qemu-arch>.elf: the tiny probes, ./internal/tinyprobe assembled by binutils\n")
	manifest.WriteString("# (loongarch64: encoded by genprobes), for Probe.\n")
	manifest.WriteString("# <goarch>.gz: ./internal/probe built by Go, gzipped, for Workload and Bench.\n")
	manifest.WriteString("# Lines: the Go release, the binutils release of each target, then the\n")
	manifest.WriteString("# sha256 and name of each file.\n")
	if withGo {
		fmt.Fprintf(&manifest, "go %s\n", version)
	}
	for _, tr := range triples() {
		fmt.Fprintf(&manifest, "binutils %s %s\n", tr, versions[tr])
	}
	for i, name := range names {
		sum := sha256.Sum256(files[i])
		fmt.Fprintf(&manifest, "%s  %s\n", hex.EncodeToString(sum[:]), name)
		if err := writeFile(filepath.Join(dir, name), files[i]); err != nil {
			return err
		}
	}
	return writeFile(filepath.Join(dir, "manifest.txt"), []byte(manifest.String()))
}

// sourceDir returns the directory of the tiny probes' sources, from
// where the go command finds this command's package (package
// mabd/emulator itself may not build while its probes are missing).
func sourceDir(gotool string) (string, error) {
	cmd := exec.Command(gotool, "list", "-f", "{{.Dir}}", "mabd/emulator/internal/genprobes")
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list mabd/emulator/internal/genprobes: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "..", "..", filepath.FromSlash(tinyDir))
	if _, err := os.Stat(filepath.Join(dir, linkerScript)); err != nil {
		return "", fmt.Errorf("the tiny probes' sources: %w", err)
	}
	return dir, nil
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
