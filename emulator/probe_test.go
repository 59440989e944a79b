package emulator_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"mabd/binfmt"
	"mabd/emulator"
	"mabd/emulator/emulatortest"
	"mabd/testing/sandbox"
)

// wantMachine is what `uname -m` says under QEMU (7.2 and 10 alike) for
// each architecture Probe can check; binfmt's table must agree where it
// has a Machine.
var wantMachine = map[string]string{
	"aarch64":     "aarch64",
	"aarch64_be":  "aarch64_be",
	"alpha":       "alpha",
	"arm":         "armv7l",
	"armeb":       "armv7b",
	"hppa":        "parisc",
	"i386":        "i686",
	"loongarch64": "loongarch64",
	"m68k":        "m68k",
	"mips":        "mips",
	"mips64":      "mips64",
	"mips64el":    "mips64",
	"mipsel":      "mips",
	"mipsn32":     "mips64",
	"mipsn32el":   "mips64",
	"ppc":         "ppc",
	"ppc64":       "ppc64",
	"ppc64le":     "ppc64le",
	"riscv32":     "riscv32",
	"riscv64":     "riscv64",
	"s390x":       "s390x",
	"sh4":         "sh4",
	"sh4eb":       "sh4",
	"sparc":       "sparc",
	"sparc32plus": "sparc64",
	"sparc64":     "sparc64",
	"x86_64":      "x86_64",
}

// wantGoarch is the Go architecture each probe is built for.
var wantGoarch = map[string]string{
	"aarch64":     "arm64",
	"arm":         "arm",
	"i386":        "386",
	"x86_64":      "amd64",
	"ppc64le":     "ppc64le",
	"ppc64":       "ppc64",
	"s390x":       "s390x",
	"riscv64":     "riscv64",
	"mips64el":    "mips64le",
	"mips64":      "mips64",
	"mips":        "mips",
	"mipsel":      "mipsle",
	"loongarch64": "loong64",
}

// testManifest is probes/manifest.txt, parsed.
type testManifest struct {
	goVersion string
	binutils  map[string]string // target triple -> release
	sums      map[string]string // file -> sha256
}

// readTestManifest reads probes/manifest.txt: the Go release and the
// sha256 of each file.
func readTestManifest(t *testing.T) (goVersion string, sums map[string]string) {
	t.Helper()
	m := readManifestFile(t)
	if m.goVersion == "" {
		t.Fatal("probes/manifest.txt has no go line")
	}
	return m.goVersion, m.sums
}

// readManifestFile reads probes/manifest.txt.
func readManifestFile(t *testing.T) testManifest {
	t.Helper()
	return parseTestManifest(t, "probes/manifest.txt")
}

func parseTestManifest(t *testing.T, path string) testManifest {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := testManifest{binutils: map[string]string{}, sums: map[string]string{}}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || strings.HasPrefix(f[0], "#"):
		case len(f) == 2 && f[0] == "go":
			m.goVersion = f[1]
		case len(f) == 3 && f[0] == "binutils":
			m.binutils[f[1]] = f[2]
		case len(f) == 2 && len(f[0]) == 64:
			m.sums[f[1]] = f[0]
		default:
			t.Fatalf("%s: cannot parse %q", path, line)
		}
	}
	return m
}

// tinyArches returns the architectures the manifest has a tiny probe
// for, sorted.
func (m testManifest) tinyArches() []string {
	var out []string
	for name := range m.sums {
		if arch, ok := strings.CutSuffix(name, ".elf"); ok {
			out = append(out, arch)
		}
	}
	slices.Sort(out)
	return out
}

// readTinyProbe returns the committed tiny probe for arch, after
// checking it against the manifest.
func readTinyProbe(t *testing.T, arch string, m testManifest) []byte {
	t.Helper()
	name := arch + ".elf"
	b, err := os.ReadFile(filepath.Join("probes", name))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != m.sums[name] {
		t.Fatalf("probes/%s: sha256 %x, the manifest says %q", name, sum, m.sums[name])
	}
	return b
}

// readTestProbe returns the committed probe for goarch, decompressed,
// after checking it against the manifest.
func readTestProbe(t *testing.T, goarch string, sums map[string]string) []byte {
	t.Helper()
	name := goarch + ".gz"
	gz, err := os.ReadFile(filepath.Join("probes", name))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(gz); hex.EncodeToString(sum[:]) != sums[name] {
		t.Fatalf("probes/%s: sha256 %x, the manifest says %q", name, sum, sums[name])
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("probes/%s: %v", name, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("probes/%s: %v", name, err)
	}
	return b
}

// staticPath is where Debian's qemu-user-static installs a's emulator.
func staticPath(a binfmt.Arch) string { return "/usr/bin/qemu-" + a.Name + "-static" }

// probeTestGo returns the go command, failing the test without one.
func probeTestGo(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build test programs: %v", err)
	}
	return p
}

// probeTestEmulator returns the path of Debian's static emulator for a,
// failing the test when it is missing.
func probeTestEmulator(t *testing.T, a binfmt.Arch) string {
	t.Helper()
	p := staticPath(a)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%v: install qemu-user-static (make deps)", err)
	}
	return p
}

// probeTestArch looks name up in binfmt's table.
func probeTestArch(t *testing.T, name string) binfmt.Arch {
	t.Helper()
	a, ok := binfmt.ArchByName(name)
	if !ok {
		t.Fatalf("%s is not in binfmt's table", name)
	}
	return a
}

// TestProbesReproducible regenerates the probes into a temporary directory
// and checks that they are byte for byte the committed ones: the tiny
// probes always (they need Debian's cross binutils of the release the
// manifest names, installed by `make deps`: without them the test fails
// saying which package to install), the Go ones too unless -short.
func TestProbesReproducible(t *testing.T) {
	m := readManifestFile(t)
	if m.goVersion != runtime.Version() {
		t.Fatalf("the embedded probes were built by %s, but this is %s: run `go generate ./emulator` (and commit emulator/probes)", m.goVersion, runtime.Version())
	}
	if len(m.binutils) == 0 {
		t.Fatal("probes/manifest.txt names no binutils")
	}
	var missing, pkgs []string
	for _, triple := range slices.Sorted(maps.Keys(m.binutils)) {
		pkg := "binutils-" + strings.ReplaceAll(triple, "x86_64", "x86-64")
		for _, tool := range []string{triple + "-as", triple + "-ld"} {
			p, err := exec.LookPath(tool)
			if err != nil {
				missing = append(missing, tool)
				if !slices.Contains(pkgs, pkg) {
					pkgs = append(pkgs, pkg)
				}
				continue
			}
			out, err := exec.Command(p, "--version").Output()
			if err != nil {
				t.Fatalf("%s --version: %v", p, err)
			}
			line, _, _ := strings.Cut(string(out), "\n")
			f := strings.Fields(line)
			if len(f) == 0 || f[len(f)-1] != m.binutils[triple] {
				t.Fatalf("%s says %q, but the committed tiny probes were made with binutils %s: install %s of that release, or regenerate them (go generate ./emulator) and commit emulator/probes", p, line, m.binutils[triple], pkg)
			}
		}
	}
	if len(missing) > 0 {
		t.Fatalf("the tiny probes are made with Debian's cross binutils: %s not found: install %s (make deps)", strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
	gotool := probeTestGo(t)
	if out, err := exec.Command(gotool, "env", "GOVERSION").Output(); err != nil || strings.TrimSpace(string(out)) != runtime.Version() {
		t.Fatalf("%s env GOVERSION = %q, %v; want %s (the go command in $PATH must be the one running the tests)", gotool, out, err, runtime.Version())
	}
	dir := t.TempDir()
	args := []string{"run", "./internal/genprobes", "-o", dir}
	if testing.Short() {
		// Building 13 Go programs takes about a minute with an empty
		// build cache; the tiny probes take a second.
		args = append(args, "-go=false")
		t.Log("-short: the tiny probes only")
	}
	cmd := exec.Command(gotool, args...)
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	committed, err := filepath.Glob("probes/*")
	if err != nil {
		t.Fatal(err)
	}
	generated, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	names := func(paths []string) []string {
		var out []string
		for _, p := range paths {
			if testing.Short() && strings.HasSuffix(p, ".gz") {
				continue
			}
			out = append(out, filepath.Base(p))
		}
		return out
	}
	if !slices.Equal(names(committed), names(generated)) {
		t.Fatalf("generated files %q, committed %q: run `go generate ./emulator`", names(generated), names(committed))
	}
	var total int
	for _, name := range names(committed) {
		want, err := os.ReadFile(filepath.Join("probes", name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "manifest.txt" && testing.Short() {
			gm := parseTestManifest(t, filepath.Join(dir, name))
			if !maps.Equal(gm.binutils, m.binutils) {
				t.Errorf("manifest.txt: regenerated binutils %v, committed %v", gm.binutils, m.binutils)
			}
			for _, arch := range m.tinyArches() {
				if f := arch + ".elf"; gm.sums[f] != m.sums[f] {
					t.Errorf("manifest.txt: %s: regenerated sha256 %s, committed %s", f, gm.sums[f], m.sums[f])
				}
			}
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("probes/%s: regenerated %d bytes differ from the committed %d: the build is not reproducible, or the probe changed without `go generate ./emulator`", name, len(got), len(want))
		}
		total += len(want)
	}
	t.Logf("%d probe files, %d bytes", len(names(committed)), total)
}

// TestEmbeddedProbes checks every embedded Go probe (those of Workload
// and Bench) against the manifest and binfmt's table: the table's magic
// selects it and no other architecture's does.
func TestEmbeddedProbes(t *testing.T) {
	if got, want := emulator.ProbeArches(), slices.Sorted(maps.Keys(wantGoarch)); !slices.Equal(got, want) {
		t.Fatalf("ProbeArches() = %q, want %q", got, want)
	}
	_, sums := readTestManifest(t)
	var gz int
	for name := range sums {
		if strings.HasSuffix(name, ".gz") {
			gz++
		}
	}
	if gz != len(wantGoarch) {
		t.Errorf("the manifest lists %d Go probes, want %d", gz, len(wantGoarch))
	}
	for _, name := range emulator.ProbeArches() {
		a := probeTestArch(t, name)
		header := readTestProbe(t, wantGoarch[name], sums)[:256]
		if !a.Spec("/usr/bin/qemu", binfmt.FixBinary).Matches(header) {
			t.Errorf("%s: the table's magic and mask do not select the %s probe", name, wantGoarch[name])
		}
		for _, o := range binfmt.Arches() {
			if o.Name != a.Name && o.Spec("/usr/bin/qemu", 0).Matches(header) {
				t.Errorf("%s: the magic of %s selects the %s probe too", name, o.Name, wantGoarch[name])
			}
		}
	}
	for name, ok := range map[string]bool{"aarch64": true, "arm64": true, "qemu-riscv64": true, "mips64le": true, "sparc64": false, "riscv32": false, "nonsense": false, "": false} {
		if emulator.HasProbe(name) != ok {
			t.Errorf("HasProbe(%q) = %v, want %v", name, !ok, ok)
		}
	}
}

// TestTinyProbes checks every tiny probe (what Probe runs) against
// binfmt's table: it is of its architecture's ELF identity, the table's
// magic and mask select it and no other architecture's do; it is a
// static executable of one read-and-execute segment holding its entry
// point, a few hundred bytes. CanProbe and ProbeableArches agree.
func TestTinyProbes(t *testing.T) {
	m := readManifestFile(t)
	want := slices.Sorted(maps.Keys(wantMachine))
	if got := m.tinyArches(); !slices.Equal(got, want) {
		t.Errorf("the manifest has tiny probes for %q, want %q", got, want)
	}
	if got := emulator.ProbeableArches(); !slices.Equal(got, want) {
		t.Errorf("ProbeableArches() = %q, want %q", got, want)
	}
	for _, name := range emulator.ProbeArches() {
		if !emulator.CanProbe(name) {
			t.Errorf("HasProbe(%q) but not CanProbe", name)
		}
	}
	for name, ok := range map[string]bool{"sparc64": true, "qemu-m68k": true, "arm64": true, "loong64": true, "mipsn32el": true, "riscv32": true, "xtensa": false, "cris": false, "nonsense": false, "": false} {
		if emulator.CanProbe(name) != ok {
			t.Errorf("CanProbe(%q) = %v, want %v", name, !ok, ok)
		}
	}
	var sizes []string
	for _, name := range m.tinyArches() {
		t.Run(name, func(t *testing.T) {
			a := probeTestArch(t, name)
			b := readTinyProbe(t, name, m)
			sizes = append(sizes, fmt.Sprintf("%s %d", name, len(b)))
			if a.Machine != "" && a.Machine != wantMachine[name] {
				t.Errorf("binfmt's table: %s has Machine %q, QEMU says %q", name, a.Machine, wantMachine[name])
			}
			f, err := elf.NewFile(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if id := (binfmt.ELFIdentity{Class: f.Class, Data: f.Data, Machine: f.Machine}); id != a.ELF() {
				t.Errorf("ELF identity %v, want %v", id, a.ELF())
			}
			if f.Type != elf.ET_EXEC {
				t.Errorf("type %v, want ET_EXEC", f.Type)
			}
			var loads []*elf.Prog
			for _, p := range f.Progs {
				switch p.Type {
				case elf.PT_LOAD:
					loads = append(loads, p)
				case elf.PT_INTERP, elf.PT_DYNAMIC:
					t.Errorf("has %v: not static", p.Type)
				}
			}
			if len(loads) != 1 {
				t.Fatalf("%d PT_LOAD segments, want 1", len(loads))
			}
			if p := loads[0]; p.Flags != elf.PF_R|elf.PF_X || p.Off != 0 || p.Filesz > uint64(len(b)) || f.Entry < p.Vaddr+64 || f.Entry >= p.Vaddr+p.Filesz {
				t.Errorf("segment %v at %#x, offset %d, %d bytes, entry %#x: want R+X from offset 0 holding the entry", p.Flags, p.Vaddr, p.Off, p.Filesz, f.Entry)
			}
			header := b[:min(len(b), 128)]
			if !a.Spec("/usr/bin/qemu", binfmt.FixBinary).Matches(header) {
				t.Errorf("the table's magic and mask for %s do not select it", name)
			}
			for _, o := range binfmt.Arches() {
				if o.Name != a.Name && o.Spec("/usr/bin/qemu", 0).Matches(header) {
					t.Errorf("the magic of %s selects it too", o.Name)
				}
			}
			if len(b) > 1024 {
				t.Errorf("%d bytes: a tiny probe is a few hundred", len(b))
			}
		})
	}
	t.Logf("sizes: %s", strings.Join(sizes, ", "))
}

func TestResultJSON(t *testing.T) {
	r := emulator.Result{Arch: "aarch64", Platform: "linux/arm64", State: emulator.StateOK, Machine: "aarch64", Duration: 12345678 * time.Nanosecond, Slowdown: 7.5}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"platform":"linux/arm64","qemu_arch":"aarch64","state":"ok","reason":"","fix":"","machine":"aarch64","duration_ms":12.345,"slowdown":7.5}`
	if string(b) != want {
		t.Fatalf("json.Marshal = %s\nwant %s", b, want)
	}
	var back emulator.Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	r.Duration = r.Duration.Truncate(time.Microsecond)
	if back != r {
		t.Fatalf("round trip: %+v, want %+v", back, r)
	}
	r = emulator.Result{Arch: "sparc64", State: emulator.StateFailed, Reason: "no probe", Duration: 0}
	b, _ = json.Marshal(&r)
	if want := `{"platform":"","qemu_arch":"sparc64","state":"failed","reason":"no probe","fix":"","machine":"","duration_ms":0}`; string(b) != want {
		t.Fatalf("json.Marshal = %s\nwant %s", b, want)
	}
}

func TestProbeNoProbe(t *testing.T) {
	r := emulator.Probe(context.Background(), probeTestArch(t, "xtensa"), emulator.ProbeOptions{})
	if r.State != emulator.StateFailed || !strings.HasPrefix(r.Reason, emulator.ReasonNoProbe) || r.Arch != "xtensa" || !strings.Contains(r.Reason, "sparc64") {
		t.Fatalf("Probe(xtensa) = %+v", r)
	}
	// Workload and Bench have the Go probe only.
	r = emulator.Workload(context.Background(), probeTestArch(t, "sparc64"), emulator.ProbeOptions{})
	if r.State != emulator.StateFailed || !strings.HasPrefix(r.Reason, emulator.ReasonNoProbe) {
		t.Fatalf("Workload(sparc64) = %+v", r)
	}
}

// TestProbeAll registers each QEMU's emulators for every foreign
// architecture Probe can check, in a private instance, and checks that
// each probe reports the machine QEMU says; x86_64 and i386 run natively,
// with no handler.
func TestProbeAll(t *testing.T) {
	var arches []binfmt.Arch
	for _, n := range emulator.ProbeableArches() {
		arches = append(arches, probeTestArch(t, n))
	}
	for _, q := range []struct {
		name string
		path func(t testing.TB, arch string) string
	}{{"QEMU 7.2", emulatortest.First}, {"QEMU 10", emulatortest.Second}} {
		t.Run(q.name, func(t *testing.T) {
			sandbox.Run(t, func(t *testing.T, mount string) {
				m := binfmt.Mount{Dir: mount}
				for _, a := range arches {
					if emulator.IsNative(a.Name) {
						continue
					}
					if err := m.Register(a.Spec(q.path(t, a.Name), binfmt.FixBinary|binfmt.PreserveArgv0)); err != nil {
						t.Fatal(err)
					}
				}
				start := time.Now()
				results := emulator.ProbeAll(context.Background(), arches, emulator.ProbeOptions{Mount: m})
				t.Logf("ProbeAll of %d architectures took %v", len(arches), time.Since(start).Round(time.Millisecond))
				for i, r := range results {
					a := arches[i]
					b, _ := json.Marshal(r)
					t.Logf("%s", b)
					want := emulator.StateOK
					if emulator.IsNative(a.Name) {
						want = emulator.StateNative
					}
					if r.Arch != a.Name || r.Platform != a.Platform || r.State != want || r.Reason != "" || r.Duration <= 0 {
						t.Errorf("%s: got %+v, want state %s", a.Name, r, want)
					}
					if want == emulator.StateOK && r.Machine != wantMachine[a.Name] {
						t.Errorf("%s: machine %q, want %q", a.Name, r.Machine, wantMachine[a.Name])
					}
				}
			})
		})
	}
}

// TestProbeAllWithoutF registers Debian's emulators for every foreign
// architecture without the F flag: alone in the empty chroot, no probe
// finds its emulator, and each says so.
func TestProbeAllWithoutF(t *testing.T) {
	var arches []binfmt.Arch
	for _, n := range emulator.ProbeableArches() {
		if !emulator.IsNative(n) {
			arches = append(arches, probeTestArch(t, n))
		}
	}
	sandbox.Run(t, func(t *testing.T, mount string) {
		m := binfmt.Mount{Dir: mount}
		for _, a := range arches {
			if err := m.Register(a.Spec(probeTestEmulator(t, a), binfmt.PreserveArgv0)); err != nil {
				t.Fatal(err)
			}
		}
		for i, r := range emulator.ProbeAll(context.Background(), arches, emulator.ProbeOptions{Mount: m}) {
			a := arches[i]
			if r.State != emulator.StateFailed || !strings.HasPrefix(r.Reason, emulator.ReasonNoFixBinary) || !strings.Contains(r.Reason, staticPath(a)) || r.Remedy != emulator.RemedyReplace {
				t.Errorf("%s: %+v, want %q naming %s", a.Name, r, emulator.ReasonNoFixBinary, staticPath(a))
			}
		}
	})
}

// fakeEmulatorSrc is a static Go program that stands in for an emulator;
// what it does depends on its name (the kernel passes the interpreter path
// as argv[0]).
const fakeEmulatorSrc = `package main

import (
	"os"
	"path/filepath"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	switch filepath.Base(os.Args[0]) {
	case "fake-hang":
		for {
			time.Sleep(time.Hour)
		}
	case "fake-segv":
		// Restore the default action (the Go runtime handles SIGSEGV)
		// and die of it, without a core file.
		syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{})
		var sa [4]uintptr // SIG_DFL, no flags, no restorer, empty mask
		syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(syscall.SIGSEGV), uintptr(unsafe.Pointer(&sa)), 0, 8, 0, 0)
		syscall.Kill(syscall.Getpid(), syscall.SIGSEGV)
		time.Sleep(time.Hour)
	case "fake-machine":
		os.Stdout.WriteString("bogus\n")
		os.Exit(0)
	case "fake-gofatal":
		// What a Go program's runtime says when the emulator delivers
		// a signal on the wrong stack.
		os.Stderr.WriteString("goroutine 0 gp=0x8408508 m=1 mp=0x8444008 [idle]:\nfatal: bad g in signal handler\n")
		os.Exit(2)
	case "fake-gosignal":
		// What a Go program's runtime says of a signal it did not
		// expect (QEMU 7.2's qemu-i386, one run in three).
		os.Stderr.WriteString("SIGSEGV: segmentation violation\nPC=0x8049f4b m=0 sigcode=1 addr=0x0\n")
		os.Exit(2)
	case "fake-wrong":
		// The workload's output with a wrong sort checksum.
		os.Stdout.WriteString("threads: sha256 of 32 MiB in 8 parts f97e0426fb66827eea1d4f6e3c3a89dc3e0e7b033ce20ccc2c6aea7459950252\nsort: 2097152 ints 0000000000000000\n")
		os.Exit(0)
	}
	os.Stderr.WriteString("fake emulator: unknown name " + os.Args[0] + "\n")
	os.Exit(3)
}
`

// buildFakeEmulator builds fakeEmulatorSrc as dir/name.
func buildFakeEmulator(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	for file, text := range map[string]string{"main.go": fakeEmulatorSrc, "go.mod": "module fake\n\ngo 1.26\n"} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command(probeTestGo(t), "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOTOOLCHAIN=local", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the fake emulator: %v\n%s", err, out)
	}
	return bin
}

// TestProbeFaults breaks foreign execution in each of the ways Probe
// classifies, in a private instance each, and checks the Reason and Fix.
func TestProbeFaults(t *testing.T) {
	aarch64 := probeTestArch(t, "aarch64")
	x86 := probeTestArch(t, "x86_64")
	sparc64 := probeTestArch(t, "sparc64")
	m68k := probeTestArch(t, "m68k")
	const pf = binfmt.FixBinary | binfmt.PreserveArgv0
	type env struct {
		t     *testing.T
		m     binfmt.Mount
		qemu  string
		mount string
	}
	register := func(e env, s binfmt.Spec) {
		e.t.Helper()
		if err := e.m.Register(s); err != nil {
			e.t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		arch    binfmt.Arch
		timeout time.Duration
		setup   func(e env)
		state   string
		reason  string   // prefix
		contain []string // in Reason
		fix     string   // in Fix; {{mount}} is replaced
		remedy  emulator.Remedy
	}{{
		name:   "no handler",
		arch:   aarch64,
		setup:  func(e env) {},
		state:  emulator.StateFailed,
		reason: emulator.ReasonNoHandler,
		fix:    "",
		remedy: emulator.RemedyRegister,
	}, {
		name:    "without F",
		arch:    aarch64,
		setup:   func(e env) { register(e, aarch64.Spec(e.qemu, binfmt.PreserveArgv0)) },
		state:   emulator.StateFailed,
		reason:  emulator.ReasonNoFixBinary,
		contain: []string{"qemu-aarch64", "/usr/bin/qemu-aarch64-static"},
		fix:     "",
		remedy:  emulator.RemedyReplace,
	}, {
		name: "other entry without F",
		arch: aarch64,
		setup: func(e env) {
			s := aarch64.Spec(e.qemu, 0)
			s.Name = "arm64-other"
			register(e, s)
		},
		state:   emulator.StateFailed,
		reason:  emulator.ReasonNoFixBinary,
		contain: []string{"arm64-other"},
	}, {
		name: "entry disabled",
		arch: aarch64,
		setup: func(e env) {
			register(e, aarch64.Spec(e.qemu, pf))
			if err := e.m.Disable("qemu-aarch64"); err != nil {
				e.t.Fatal(err)
			}
		},
		state:   emulator.StateFailed,
		reason:  emulator.ReasonEntryDisabled,
		contain: []string{"qemu-aarch64"},
		fix:     "echo 1 > {{mount}}/qemu-aarch64",
	}, {
		name: "other entry disabled",
		arch: aarch64,
		setup: func(e env) {
			s := aarch64.Spec(e.qemu, pf)
			s.Name = "arm64-other"
			register(e, s)
			if err := e.m.Disable(s.Name); err != nil {
				e.t.Fatal(err)
			}
		},
		state:  emulator.StateFailed,
		reason: emulator.ReasonEntryDisabled,
		fix:    "echo 1 > {{mount}}/arm64-other",
	}, {
		name: "facility disabled",
		arch: aarch64,
		setup: func(e env) {
			register(e, aarch64.Spec(e.qemu, pf))
			if err := e.m.SetEnabled(false); err != nil {
				e.t.Fatal(err)
			}
		},
		state:  emulator.StateFailed,
		reason: emulator.ReasonFacilityDisabled,
		fix:    "echo 1 > {{mount}}/status",
	}, {
		name: "facility disabled, native",
		arch: x86,
		setup: func(e env) {
			if err := e.m.SetEnabled(false); err != nil {
				e.t.Fatal(err)
			}
		},
		state: emulator.StateNative,
	}, {
		name: "entry does not match",
		arch: aarch64,
		setup: func(e env) {
			s := aarch64.Spec(e.qemu, pf)
			s.Magic[18] = 0x28 // e_machine EM_ARM
			register(e, s)
		},
		state:  emulator.StateFailed,
		reason: emulator.ReasonNoMatch,
		fix:    "",
		remedy: emulator.RemedyReplace,
	}, {
		name:    "interpreter missing",
		arch:    aarch64,
		setup:   func(e env) { register(e, aarch64.Spec("/nonexistent/qemu", binfmt.PreserveArgv0)) },
		state:   emulator.StateFailed,
		reason:  emulator.ReasonInterpreterMissing,
		contain: []string{"/nonexistent/qemu", "does not exist"},
		fix:     "qemu-user-static",
	}, {
		name:    "dynamic interpreter",
		arch:    aarch64,
		setup:   func(e env) { register(e, aarch64.Spec("/bin/true", pf)) },
		state:   emulator.StateFailed,
		reason:  emulator.ReasonDynamicInterpreter,
		contain: []string{"/bin/true"},
		fix:     "qemu-user-static",
	}, {
		name: "noexec TMPDIR",
		arch: x86,
		setup: func(e env) {
			// A mount point in the child's TMPDIR, without cleanup: the
			// mount vanishes with the sandbox, the directory with the
			// parent's TempDir.
			dir, err := os.MkdirTemp("", "noexec-")
			if err != nil {
				e.t.Fatal(err)
			}
			if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
				e.t.Fatalf("mount tmpfs on %s: %v", dir, err)
			}
			e.t.Setenv("TMPDIR", dir)
		},
		state:  emulator.StateFailed,
		reason: emulator.ReasonNoExec,
		fix:    "TMPDIR",
	}, {
		name:    "emulator hangs",
		arch:    aarch64,
		timeout: 2 * time.Second,
		setup:   func(e env) { register(e, aarch64.Spec(buildFakeEmulator(e.t, "fake-hang"), pf)) },
		state:   emulator.StateFailed,
		reason:  emulator.ReasonTimeout,
		contain: []string{"2s", "fake-hang"},
	}, {
		name:    "sparc64 without F",
		arch:    sparc64,
		setup:   func(e env) { register(e, sparc64.Spec(e.qemu, binfmt.PreserveArgv0)) },
		state:   emulator.StateFailed,
		reason:  emulator.ReasonNoFixBinary,
		contain: []string{"qemu-sparc64", "/usr/bin/qemu-sparc64-static"},
		remedy:  emulator.RemedyReplace,
	}, {
		name:    "m68k no interpreter",
		arch:    m68k,
		setup:   func(e env) { register(e, m68k.Spec("/nonexistent/qemu", binfmt.PreserveArgv0)) },
		state:   emulator.StateFailed,
		reason:  emulator.ReasonInterpreterMissing,
		contain: []string{"/nonexistent/qemu", "does not exist"},
		fix:     "qemu-user-static",
	}, {
		name:    "sparc64 crashes",
		arch:    sparc64,
		setup:   func(e env) { register(e, sparc64.Spec(buildFakeEmulator(e.t, "fake-segv"), pf)) },
		state:   emulator.StateFailed,
		reason:  emulator.ReasonCrashed,
		contain: []string{"SIGSEGV", "fake-segv"},
		fix:     "upgrade qemu-user-static",
	}, {
		name:    "emulator crashes",
		arch:    aarch64,
		setup:   func(e env) { register(e, aarch64.Spec(buildFakeEmulator(e.t, "fake-segv"), pf)) },
		state:   emulator.StateFailed,
		reason:  emulator.ReasonCrashed,
		contain: []string{"SIGSEGV", "fake-segv"},
		fix:     "upgrade qemu-user-static",
	}, {
		name:    "wrong machine",
		arch:    aarch64,
		setup:   func(e env) { register(e, aarch64.Spec(buildFakeEmulator(e.t, "fake-machine"), pf)) },
		state:   emulator.StateFailed,
		reason:  emulator.ReasonWrongMachine,
		contain: []string{`"bogus"`, `"aarch64"`},
		fix:     "",
		remedy:  emulator.RemedyReplace,
	}, {
		name:   "exit status",
		arch:   aarch64,
		setup:  func(e env) { register(e, aarch64.Spec(buildFakeEmulator(e.t, "fake-other"), pf)) },
		state:  emulator.StateFailed,
		reason: emulator.ReasonExitStatus,
		// The fake's stderr is quoted.
		contain: []string{"exit status 3", "unknown name"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			sandbox.Run(t, func(t *testing.T, mount string) {
				e := env{t: t, m: binfmt.Mount{Dir: mount}, qemu: probeTestEmulator(t, tc.arch), mount: mount}
				tc.setup(e)
				start := time.Now()
				r := emulator.Probe(context.Background(), tc.arch, emulator.ProbeOptions{Mount: e.m, Timeout: tc.timeout})
				elapsed := time.Since(start)
				b, _ := json.Marshal(r)
				t.Logf("%s (%v)", b, elapsed.Round(time.Millisecond))
				if r.State != tc.state {
					t.Fatalf("state %q, want %q", r.State, tc.state)
				}
				if tc.state != emulator.StateFailed {
					if r.Reason != "" || r.Fix != "" {
						t.Errorf("reason %q, fix %q for state %s", r.Reason, r.Fix, r.State)
					}
					return
				}
				if !strings.HasPrefix(r.Reason, tc.reason) {
					t.Errorf("reason %q, want it to start with %q", r.Reason, tc.reason)
				}
				for _, s := range tc.contain {
					if !strings.Contains(r.Reason, s) {
						t.Errorf("reason %q does not contain %q", r.Reason, s)
					}
				}
				if fix := strings.ReplaceAll(tc.fix, "{{mount}}", mount); !strings.Contains(r.Fix, fix) {
					t.Errorf("fix %q, want it to contain %q", r.Fix, fix)
				}
				if tc.remedy != "" && r.Remedy != tc.remedy {
					t.Errorf("remedy %q, want %q", r.Remedy, tc.remedy)
				}
			})
		})
	}
}
