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
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"mabd/binfmt"
)

// The probe programs: ./internal/probe built by ./internal/genprobes for
// every architecture of binfmt's table that Go builds for (those with a
// GOARCH), gzipped, with a manifest of their sha256 sums and of the Go
// release that built them. Regenerate them with `go generate ./emulator`
// after changing the probe, the table or Go.
//
//go:embed probes/*.gz probes/manifest.txt
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

// probeFile is the name of the probe in its chroot.
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

// HasProbe reports whether mabd has a probe program for the architecture
// qemuArch (a QEMU name such as "aarch64"; aliases such as "arm64" are
// accepted too): one of the architectures Go builds for (aarch64, arm,
// i386, loongarch64, mips, mips64, mips64el, mipsel, ppc64, ppc64le,
// riscv64, s390x, x86_64).
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

// ProbeArches returns the QEMU names of the architectures that have a
// probe program, sorted.
func ProbeArches() []string {
	var out []string
	for _, a := range binfmt.Arches() {
		if a.GOARCH() != "" {
			out = append(out, a.Name)
		}
	}
	slices.Sort(out)
	return out
}

var (
	manifestOnce sync.Once
	manifestVal  probeManifest
	manifestErr  error
)

// probeManifest is the parsed probes/manifest.txt.
type probeManifest struct {
	goVersion string
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
// lines starting with '#', "go <release>", then "<sha256>  <file>" lines.
func parseManifest(b []byte) (probeManifest, error) {
	m := probeManifest{sums: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch f := strings.Fields(line); {
		case line == "" || strings.HasPrefix(line, "#"):
		case len(f) == 2 && f[0] == "go":
			m.goVersion = f[1]
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
// built them and a digest of their manifest. A proof made with other
// programs (an older mabd's) is not one made with these.
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

// Probe checks that the kernel runs programs of architecture a: it writes
// a's probe program (a static Go program printing uname's machine) into a
// fresh temporary directory as its only file and runs it chrooted into
// that directory, so nothing else is reachable: on a foreign architecture
// it passes only when binfmt_misc hands it to an emulator registered with
// the F flag (opened at registration, as containers need). The run is
// bounded by opt.Timeout; on timeout, or when ctx is done, its process
// group is killed.
//
// The result's State is StateOK when the probe printed a.Machine through a
// handler of opt.Mount, StateNative when it ran with no handler selecting
// it (the host runs a natively; the machine is then not checked, as the
// kernel reports its own), and StateFailed otherwise, with Reason and Fix
// derived from the exec error or exit status and the entries of opt.Mount
// (see classify.go). An architecture without a probe (see [HasProbe])
// fails with [ReasonNoProbe].
//
// Chroot needs root (CAP_SYS_CHROOT); without it Probe fails with
// [ReasonNoChroot]. The temporary directory is in os.TempDir(), which must
// allow executing programs.
func Probe(ctx context.Context, a binfmt.Arch, opt ProbeOptions) Result {
	r, bin := loadProbe(a)
	if bin == nil {
		return r
	}
	run := runProbe(ctx, bin, nil, nil, opt.timeout())
	r.Duration = run.elapsed
	classify(&r, a, opt, run)
	return r
}

// loadProbe returns a's probe program, or nil and a failed result that
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
		r.Reason, r.Fix = fmt.Sprintf("%s: mabd has probe programs only for the architectures Go builds for (%s)", ReasonNoProbe, strings.Join(ProbeArches(), ", ")), ""
	}
	return r, nil
}

// ProbeAll runs [Probe] for each architecture, several at a time (at most
// the number of CPUs), and returns the results in the order of arches.
func ProbeAll(ctx context.Context, arches []binfmt.Arch, opt ProbeOptions) []Result {
	return forEachArch(arches, func(a binfmt.Arch) Result { return Probe(ctx, a, opt) })
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
	var run probeRun
	run.header = bin[:min(len(bin), 256)]
	dir, err := os.MkdirTemp("", "mabd-probe-")
	if err != nil {
		run.err, run.setup = fmt.Errorf("create probe directory: %w", err), true
		return run
	}
	defer os.RemoveAll(dir)
	// The process runs as the caller; 0755 lets it in whatever its
	// credentials (the C flag may change them).
	if err := os.Chmod(dir, 0o755); err != nil {
		run.err, run.setup = fmt.Errorf("prepare probe directory: %w", err), true
		return run
	}
	run.dir = dir
	if err := os.WriteFile(filepath.Join(dir, probeFile), bin, 0o755); err != nil {
		run.err, run.setup = fmt.Errorf("write probe: %w", err), true
		return run
	}

	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stdout, stderr limitedBuffer
	start := time.Now()
	// A concurrent fork in this process may still hold the file open for
	// writing when we exec it (ETXTBSY); retry briefly, as cmd/go does.
	for attempt := 0; ; attempt++ {
		stdout.Reset()
		stderr.Reset()
		cmd := exec.CommandContext(rctx, "/"+probeFile, args...)
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
