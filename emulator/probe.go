package emulator

//go:generate go run ./internal/genprobes

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"mabd/binfmt"
	"mabd/internal/parallel"
)

// The probe programs (see ./internal/genprobes), with a manifest of their
// sha256 sums and of the Go release and binutils that made them:
//
//   - <qemu-arch>.elf, the tiny probes: ./internal/tinyprobe assembled
//     with Debian's cross binutils for every architecture of binfmt's table
//     they target, a few hundred bytes each, that print uname's machine.
//     [Probe] runs them.
//   - <goarch>.gz: ./internal/probe, a Go program, built for every
//     architecture of the table that Go builds for (those with a GOARCH),
//     gzipped. [Workload] and [Bench] run it, and [Probe] where there is
//     no tiny probe.
//
// Regenerate them with `go generate ./emulator` after changing a probe,
// the table, Go or binutils.
//
//go:embed probes/*.gz probes/*.elf probes/manifest.txt
var probeFS embed.FS

// The states of a [Result].
const (
	// StateOK: the probe ran under an emulator and reported the machine
	// it should.
	StateOK = "ok"
	// StateNative: the probe ran although no binfmt_misc handler selects
	// it, so the kernel runs the architecture itself (x86_64 and i386 on an
	// amd64 host).
	StateNative = "native"
	// StateFailed: the probe did not run or did not report the right
	// machine; Reason says why and Fix what to do.
	StateFailed = "failed"
)

// DefaultProbeTimeout bounds one run of a probe when
// [ProbeOptions.Timeout] is 0.
const DefaultProbeTimeout = 10 * time.Second

// probeWaitDelay is how long a probe run waits, after the process exited
// or was killed, for its output pipes to close.
const probeWaitDelay = time.Second

// probeMaxOutput caps how much of a probe's stdout and stderr is kept.
const probeMaxOutput = 16 << 10

// probeFile is the name of the probe in its chroot when it runs alone
// (Workload, Bench); ProbeAll names each by its architecture.
const probeFile = "probe"

// Result is the outcome of probing one architecture.
//
// In JSON (see [Result.MarshalJSON]) it is an object with the keys
// platform, qemu_arch, state, reason, fix, machine, duration_ms (a number
// of milliseconds with microsecond precision) and slowdown (left out when
// 0).
type Result struct {
	// Arch is the QEMU name of the architecture ("aarch64").
	Arch string
	// Platform is its OCI platform ("linux/arm64"), "" if it has none.
	Platform string
	// State is StateOK, StateNative or StateFailed.
	State string
	// Reason says why the probe failed, "" unless State is StateFailed.
	// It starts with one of the Reason constants (see classify.go), such
	// as [ReasonNoHandler], followed by details after a colon.
	Reason string
	// Fix says what to do about a failure besides what mabd can do itself
	// (Remedy): a command or a step to take.
	Fix string
	// Remedy is what mabd can do about the failure, for the caller to
	// word.
	Remedy Remedy
	// Machine is what the probe printed (uname -m as the program sees
	// it), "" if it printed nothing. Natively the host kernel answers, so
	// the i386 probe on an amd64 host says "x86_64".
	Machine string
	// Duration is the wall-clock time of the probe run, from the start of
	// the process to its end (emulator start-up included).
	Duration time.Duration
	// Slowdown is emulated/native time of the benchmark (see [Bench]), 0
	// when it was not measured. Probe leaves it 0; the caller fills it.
	Slowdown float64
}

// resultJSON is the JSON form of Result.
type resultJSON struct {
	Platform   string  `json:"platform"`
	QEMUArch   string  `json:"qemu_arch"`
	State      string  `json:"state"`
	Reason     string  `json:"reason"`
	Fix        string  `json:"fix"`
	Remedy     Remedy  `json:"remedy,omitempty"`
	Machine    string  `json:"machine"`
	DurationMS float64 `json:"duration_ms"`
	Slowdown   float64 `json:"slowdown,omitempty"`
}

// MarshalJSON writes r as
//
//	{"platform":"linux/arm64","qemu_arch":"aarch64","state":"ok","reason":"","fix":"","machine":"aarch64","duration_ms":12.345}
//
// duration_ms is Duration in milliseconds, a float rounded to the
// microsecond; slowdown is present only when it is not 0.
func (r Result) MarshalJSON() ([]byte, error) {
	return json.Marshal(resultJSON{
		Platform:   r.Platform,
		QEMUArch:   r.Arch,
		State:      r.State,
		Reason:     r.Reason,
		Fix:        r.Fix,
		Remedy:     r.Remedy,
		Machine:    r.Machine,
		DurationMS: float64(r.Duration.Microseconds()) / 1000,
		Slowdown:   r.Slowdown,
	})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Result) UnmarshalJSON(b []byte) error {
	var j resultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = Result{
		Arch:     j.QEMUArch,
		Platform: j.Platform,
		State:    j.State,
		Reason:   j.Reason,
		Fix:      j.Fix,
		Remedy:   j.Remedy,
		Machine:  j.Machine,
		Duration: time.Duration(j.DurationMS * float64(time.Millisecond)).Round(time.Microsecond),
		Slowdown: j.Slowdown,
	}
	return nil
}

// ProbeOptions configure [Probe], [ProbeAll], [Workload] and [Bench].
type ProbeOptions struct {
	// Mount is the binfmt_misc instance whose entries run the probes (the
	// one the calling process sees); its entries are read to explain a
	// failure and to tell native from emulated execution. The zero value
	// is the host's, /proc/sys/fs/binfmt_misc.
	Mount binfmt.Mount
	// Timeout bounds each run of a probe; 0 means DefaultProbeTimeout.
	// When it passes, the probe's process group is killed.
	Timeout time.Duration
	// WorkloadTimeout bounds each run of the workload probe (see
	// [Workload]); 0 means DefaultWorkloadTimeout.
	WorkloadTimeout time.Duration
}

func (o ProbeOptions) timeout() time.Duration {
	if o.Timeout <= 0 {
		return DefaultProbeTimeout
	}
	return o.Timeout
}

func (o ProbeOptions) workloadTimeout() time.Duration {
	if o.WorkloadTimeout <= 0 {
		return DefaultWorkloadTimeout
	}
	return o.WorkloadTimeout
}

// HasProbe reports whether mabd has its Go probe program for the
// architecture qemuArch (a QEMU name such as "aarch64"; aliases such as
// "arm64" are accepted too): one of the architectures Go builds for
// (aarch64, arm, i386, loongarch64, mips, mips64, mips64el, mipsel, ppc64,
// ppc64le, riscv64, s390x, x86_64). Those are the architectures every
// proof runs for: [Probe], [Workload] and [Bench]. [Probe] alone runs for
// more: see [CanProbe].
func HasProbe(qemuArch string) bool {
	_, ok := probeGoarch(qemuArch)
	return ok
}

// probeGoarch returns the Go architecture whose probe runs qemuArch's
// programs, from the table.
func probeGoarch(qemuArch string) (string, bool) {
	a, ok := binfmt.ArchByName(qemuArch)
	if !ok || a.GOARCH() == "" {
		return "", false
	}
	return a.GOARCH(), true
}

// ProbeArches returns the QEMU names of the architectures that have the
// Go probe program (see [HasProbe]), sorted.
func ProbeArches() []string {
	var out []string
	for a := range binfmt.All() {
		if a.GOARCH() != "" {
			out = append(out, a.Name)
		}
	}
	slices.Sort(out)
	return out
}

// CanProbe reports whether [Probe] can check the architecture qemuArch (a
// QEMU name or an alias): mabd has a tiny probe for it (every
// architecture Debian 12 has cross binutils for: aarch64, aarch64_be,
// alpha, arm, armeb, hppa, i386, m68k, the six mips ones, ppc, ppc64,
// ppc64le, riscv32, riscv64, s390x, sh4, sh4eb, sparc, sparc32plus,
// sparc64, x86_64) or its Go probe (loongarch64). Every architecture
// with [HasProbe] has CanProbe.
func CanProbe(qemuArch string) bool {
	a, ok := binfmt.ArchByName(qemuArch)
	if !ok {
		return false
	}
	return hasTiny(a.Name) || HasProbe(a.Name)
}

// ProbeableArches returns the QEMU names of the architectures [Probe] can
// check (see [CanProbe]), sorted.
func ProbeableArches() []string {
	var out []string
	for a := range binfmt.All() {
		if CanProbe(a.Name) {
			out = append(out, a.Name)
		}
	}
	return out
}

// hasTiny reports whether the manifest lists a tiny probe for the QEMU
// architecture name.
func hasTiny(name string) bool {
	m, err := readManifest()
	return err == nil && m.sums[name+tinySuffix] != ""
}

// tinySuffix ends the name of a tiny probe's file; <goarch>.gz are the Go
// probes.
const tinySuffix = ".elf"

var (
	manifestOnce sync.Once
	manifestVal  probeManifest
	manifestErr  error
)

// probeManifest is the parsed probes/manifest.txt.
type probeManifest struct {
	goVersion string
	binutils  map[string]string // target triple -> binutils release
	sums      map[string]string // file name -> sha256 in hex
}

// readManifest parses the embedded manifest, once.
func readManifest() (probeManifest, error) {
	manifestOnce.Do(func() {
		b, err := probeFS.ReadFile("probes/manifest.txt")
		if err != nil {
			manifestErr = fmt.Errorf("read embedded probe manifest: %w", err)
			return
		}
		manifestVal, manifestErr = parseManifest(b)
	})
	return manifestVal, manifestErr
}

// parseManifest reads the manifest format of ./internal/genprobes: comment
// lines starting with '#', "go <release>", "binutils <triple> <release>",
// then "<sha256>  <file>" lines.
func parseManifest(b []byte) (probeManifest, error) {
	m := probeManifest{binutils: map[string]string{}, sums: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch f := strings.Fields(line); {
		case line == "" || strings.HasPrefix(line, "#"):
		case len(f) == 2 && f[0] == "go":
			m.goVersion = f[1]
		case len(f) == 3 && f[0] == "binutils":
			m.binutils[f[1]] = f[2]
		case len(f) == 2 && len(f[0]) == 64:
			m.sums[f[1]] = f[0]
		default:
			return probeManifest{}, fmt.Errorf("probe manifest: line %d: cannot parse %q", n, line)
		}
	}
	if m.goVersion == "" {
		return probeManifest{}, errors.New("probe manifest: no \"go\" line")
	}
	return m, nil
}

// ProbesID identifies the embedded probe programs: the Go release that
// built the Go ones and a digest of their manifest, which holds the sha256
// of every probe, tiny or Go, and the binutils releases. A proof made with
// other programs (an older mabd's) is not one made with these.
func ProbesID() string {
	b, err := probeFS.ReadFile("probes/manifest.txt")
	m, merr := readManifest()
	if err != nil || merr != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return m.goVersion + "-" + hex.EncodeToString(sum[:6])
}

// probeProgram returns the probe for the QEMU architecture name, checked
// against the manifest and decompressed.
func probeProgram(qemuArch string) ([]byte, error) {
	goarch, ok := probeGoarch(qemuArch)
	if !ok {
		return nil, fmt.Errorf("no probe program for %s", qemuArch)
	}
	return probeForGoarch(goarch)
}

// probeForGoarch returns the probe built for the Go architecture goarch.
func probeForGoarch(goarch string) ([]byte, error) {
	m, err := readManifest()
	if err != nil {
		return nil, err
	}
	name := goarch + ".gz"
	gz, err := probeFS.ReadFile("probes/" + name)
	if err != nil {
		return nil, fmt.Errorf("read embedded probe %s: %w", name, err)
	}
	sum := sha256.Sum256(gz)
	if want := m.sums[name]; hex.EncodeToString(sum[:]) != want {
		return nil, fmt.Errorf("embedded probe %s: sha256 %x does not match the manifest's %q; run `go generate ./emulator`", name, sum, want)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, fmt.Errorf("decompress embedded probe %s: %w", name, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("decompress embedded probe %s: %w", name, err)
	}
	return b, nil
}

// tinyProgram returns the tiny probe for the QEMU architecture name,
// checked against the manifest, or false when there is none.
func tinyProgram(name string) ([]byte, bool, error) {
	if !hasTiny(name) {
		return nil, false, nil
	}
	m, err := readManifest()
	if err != nil {
		return nil, true, err
	}
	file := name + tinySuffix
	b, err := probeFS.ReadFile("probes/" + file)
	if err != nil {
		return nil, true, fmt.Errorf("read embedded probe %s: %w", file, err)
	}
	sum := sha256.Sum256(b)
	if want := m.sums[file]; hex.EncodeToString(sum[:]) != want {
		return nil, true, fmt.Errorf("embedded probe %s: sha256 %x does not match the manifest's %q; run `go generate ./emulator`", file, sum, want)
	}
	return b, true, nil
}

// Probe checks that the kernel runs programs of architecture a: it writes
// a's probe program (a tiny static program printing uname's machine; see
// [CanProbe]) into a fresh temporary directory that holds nothing else
// and runs it chrooted into that directory, so no other file is
// reachable: on a foreign architecture it passes only when binfmt_misc
// hands it to an emulator registered with the F flag (opened at
// registration, as containers need). The run is bounded by opt.Timeout;
// on timeout, or when ctx is done, its process group is killed.
//
// The result's State is StateOK when the probe printed a.Machine through a
// handler of opt.Mount, StateNative when it ran with no handler selecting
// it (the host runs a natively; the machine is then not checked, as the
// kernel reports its own), and StateFailed otherwise, with Reason and Fix
// derived from the exec error or exit status and the entries of opt.Mount
// (see classify.go). An architecture without a probe (see [CanProbe])
// fails with [ReasonNoProbe].
//
// Chroot needs root (CAP_SYS_CHROOT); without it Probe fails with
// [ReasonNoChroot]. The temporary directory is in os.TempDir(), which must
// allow executing programs.
func Probe(ctx context.Context, a binfmt.Arch, opt ProbeOptions) Result {
	return ProbeAll(ctx, []binfmt.Arch{a}, opt)[0]
}

// ProbeAll runs [Probe] for each architecture and returns the results in
// the order of arches. The probes are written once, into one temporary
// directory that holds nothing but them (and so no emulator: the proof of
// the F flag is the same), and run chrooted into it, several at a time
// ([ProbeWorkers]).
func ProbeAll(ctx context.Context, arches []binfmt.Arch, opt ProbeOptions) []Result {
	out := make([]Result, len(arches))
	progs := make(map[string][]byte, len(arches))
	var todo []int
	for i, a := range arches {
		r, bin := loadCheck(a)
		out[i] = r
		if bin != nil {
			progs[a.Name] = bin
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return out
	}
	dir, err := writeProbes(progs)
	if dir != "" {
		defer os.RemoveAll(dir)
	}
	t := newTable(opt.Mount)
	parallel.Run(len(todo), ProbeWorkers(), func(j int) {
		i := todo[j]
		a := arches[i]
		bin := progs[a.Name]
		run := probeRun{dir: dir, header: bin[:min(len(bin), 256)], err: err, setup: err != nil}
		if err == nil {
			run = runIn(ctx, dir, a.Name, run.header, nil, nil, opt.timeout())
		}
		out[i].Duration = run.elapsed
		classify(&out[i], a, opt, t, run)
	})
	return out
}

// ProbeWorkers is how many probes [ProbeAll] runs at a time: two per CPU.
// An emulator's start is mostly the kernel's work (mapping QEMU, faulting
// its pages in), a few milliseconds; a second run per CPU fills the gaps
// of process start and exit.
func ProbeWorkers() int { return 2 * runtime.NumCPU() }

// loadCheck returns the program Probe runs for a: its tiny probe, else its
// Go probe; or nil and a failed result that says why there is none.
func loadCheck(a binfmt.Arch) (Result, []byte) {
	r := Result{Arch: a.Name, Platform: a.Platform}
	bin, ok, err := tinyProgram(a.Name)
	switch {
	case ok && err == nil:
		return r, bin
	case ok:
		r.State = StateFailed
		r.Reason, r.Fix = ReasonNoProbe+": "+err.Error(), "rebuild mabd (go generate ./emulator)"
		return r, nil
	case HasProbe(a.Name):
		return loadProbe(a)
	}
	r.State = StateFailed
	r.Reason = fmt.Sprintf("%s: mabd has probe programs only for %s", ReasonNoProbe, strings.Join(ProbeableArches(), ", "))
	return r, nil
}

// writeProbes creates a temporary directory holding each program of progs
// under its name, and nothing else. On error it returns the directory
// (if it was made, for the caller to remove) and the error.
func writeProbes(progs map[string][]byte) (string, error) {
	dir, err := os.MkdirTemp("", "mabd-probe-")
	if err != nil {
		return "", fmt.Errorf("create probe directory: %w", err)
	}
	// The process runs as the caller; 0755 lets it in whatever its
	// credentials (the C flag may change them).
	if err := os.Chmod(dir, 0o755); err != nil {
		return dir, fmt.Errorf("prepare probe directory: %w", err)
	}
	for name, bin := range progs {
		if err := os.WriteFile(filepath.Join(dir, name), bin, 0o755); err != nil {
			return dir, fmt.Errorf("write probe: %w", err)
		}
	}
	return dir, nil
}

// loadProbe returns a's Go probe program, or nil and a failed result that
// says why there is none.
func loadProbe(a binfmt.Arch) (Result, []byte) {
	r := Result{Arch: a.Name, Platform: a.Platform}
	bin, err := probeProgram(a.Name)
	if err == nil {
		return r, bin
	}
	r.State = StateFailed
	if HasProbe(a.Name) {
		r.Reason, r.Fix = ReasonNoProbe+": "+err.Error(), "rebuild mabd (go generate ./emulator)"
	} else {
		r.Reason, r.Fix = fmt.Sprintf("%s: mabd has its Go probe program (the workload and bench probe) only for the architectures Go builds for (%s)", ReasonNoProbe, strings.Join(ProbeArches(), ", ")), ""
	}
	return r, nil
}

// probeRun is what one run of a probe gave.
type probeRun struct {
	dir     string // the chroot (removed when the run is over)
	header  []byte // the first bytes of the program, as binfmt_misc sees them
	stdout  string
	stderr  string
	err     error // the error of starting or waiting for the process, or of preparing the chroot
	setup   bool  // err happened before the process was started
	elapsed time.Duration
	// timedOut: the run's own deadline passed; ctxErr: the caller's
	// context was done first.
	timedOut bool
	ctxErr   error
	// workload: the run was the workload probe's, whose whole output is
	// checked instead of the machine.
	workload bool
}

// runProbe writes bin into a new temporary directory as its only file,
// runs it there chrooted with args and the environment env (nil: an
// empty one), in a process group of its own, and removes the directory.
// The run is killed (its whole process group) after timeout or when ctx
// is done.
func runProbe(ctx context.Context, bin []byte, args, env []string, timeout time.Duration) probeRun {
	header := bin[:min(len(bin), 256)]
	dir, err := writeProbes(map[string][]byte{probeFile: bin})
	if dir != "" {
		defer os.RemoveAll(dir)
	}
	if err != nil {
		return probeRun{header: header, err: err, setup: true}
	}
	return runIn(ctx, dir, probeFile, header, args, env, timeout)
}

// runIn runs the program name of dir chrooted into dir, with args and the
// environment env (nil: an empty one), in a process group of its own.
// The run is killed (its whole process group) after timeout or when ctx
// is done.
func runIn(ctx context.Context, dir, name string, header []byte, args, env []string, timeout time.Duration) probeRun {
	run := probeRun{dir: dir, header: header}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stdout, stderr limitedBuffer
	var err error
	start := time.Now()
	// A concurrent fork in this process may still hold the file open for
	// writing when we exec it (ETXTBSY); retry briefly, as cmd/go does.
	for attempt := 0; ; attempt++ {
		stdout.Reset()
		stderr.Reset()
		cmd := exec.CommandContext(rctx, "/"+name, args...)
		cmd.Dir = "/"
		cmd.Env = append([]string{}, env...)
		cmd.Stdout = &stdout
		cmd.Stderr = &stderr
		cmd.WaitDelay = probeWaitDelay
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: dir, Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		start = time.Now()
		err = cmd.Run()
		if errors.Is(err, syscall.ETXTBSY) && cmd.Process == nil && attempt < 20 && rctx.Err() == nil {
			time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
			continue
		}
		break
	}
	run.elapsed = time.Since(start)
	run.stdout, run.stderr, run.err = stdout.String(), stderr.String(), err
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			run.ctxErr = cerr
		} else if rctx.Err() != nil {
			run.timedOut = true
		}
	}
	return run
}

// limitedBuffer keeps the first probeMaxOutput bytes written to it and
// discards the rest, so a misbehaving emulator cannot exhaust memory.
type limitedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := probeMaxOutput - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) Reset() {
	l.mu.Lock()
	l.b = l.b[:0]
	l.mu.Unlock()
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// startErrno returns the errno with which starting the process failed, if
// it did (the process never ran).
func startErrno(err error) (syscall.Errno, bool) {
	var pe *fs.PathError
	var errno syscall.Errno
	if errors.As(err, &pe) && errors.As(pe.Err, &errno) {
		return errno, true
	}
	return 0, false
}
