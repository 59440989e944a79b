package userns

// Host checks and the explanation of the kernel's refusals.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// MinKernelMajor and MinKernelMinor are the first Linux release (6.7) in
// which binfmt_misc is per user namespace: before it, a user namespace can
// neither mount binfmt_misc nor have handlers of its own.
const (
	MinKernelMajor = 6
	MinKernelMinor = 7
)

// The sysctls that decide whether a process may have the namespaces, as
// sysctl(8) names them.
const (
	SysctlMaxUserNamespaces  = "user.max_user_namespaces"
	SysctlMaxMntNamespaces   = "user.max_mnt_namespaces"
	SysctlMaxPIDNamespaces   = "user.max_pid_namespaces"
	SysctlUnprivilegedClone  = "kernel.unprivileged_userns_clone"             // Debian, older Ubuntu
	SysctlAppArmorRestricted = "kernel.apparmor_restrict_unprivileged_userns" // Ubuntu 23.10 and later
)

// KernelTooOldError says that the running kernel predates
// per-user-namespace binfmt_misc (Linux 6.7).
type KernelTooOldError struct {
	Release string // as uname -r prints it
}

func (e *KernelTooOldError) Error() string {
	return fmt.Sprintf("binfmt_misc is per user namespace only since Linux %d.%d; this kernel is %s",
		MinKernelMajor, MinKernelMinor, e.Release)
}

// Reason says why private binfmt_misc instances are unavailable.
type Reason int

const (
	// Disabled: a sysctl turns the namespaces off (Sysctl names it,
	// Allow is a value that turns them on).
	Disabled Reason = iota + 1
	// Refused: the kernel refused to create the namespaces (EPERM,
	// EACCES): kernel.unprivileged_userns_clone, an AppArmor or SELinux
	// policy or a seccomp filter (a container's, for one) forbids them.
	Refused
	// Limit: a namespace limit is reached (ENOSPC, EUSERS):
	// user.max_user_namespaces and the like, for this user or the host.
	Limit
	// Unsupported: the kernel has no user namespaces (EINVAL:
	// CONFIG_USER_NS, CONFIG_PID_NS).
	Unsupported
	// NoFilesystem: the kernel has no binfmt_misc file system (not
	// built, module not loaded).
	NoFilesystem
	// MountRefused: the new user namespace may not mount (EPERM,
	// EACCES): AppArmor restricts unprivileged user namespaces (then
	// Sysctl is SysctlAppArmorRestricted), or an SELinux policy or a
	// seccomp filter forbids mount.
	MountRefused
)

// UnavailableError says that this process cannot have a private
// binfmt_misc instance here, and why. Errno is the kernel's refusal, or 0
// when a check found the reason before anything was tried.
type UnavailableError struct {
	Reason Reason
	Op     string        // what failed: "create user and mount namespaces", "mount binfmt_misc on DIR"; "" for a check
	Sysctl string        // the sysctl that decides, when one is known to
	Allow  string        // a value of Sysctl that allows the namespaces
	Errno  syscall.Errno // the kernel's refusal; 0 for a check
	Err    error         // what happened: the failed call's error, or what the check found
}

// Error reads, for example:
//
//	user namespaces are disabled: /proc/sys/user/max_user_namespaces is 0
//	create user and mount namespaces: fork/exec /proc/self/exe: operation not permitted (EPERM): user namespaces are not allowed for this process
func (e *UnavailableError) Error() string {
	var why string
	switch e.Reason {
	case Disabled:
		why = "user namespaces are disabled"
		if e.Sysctl == SysctlUnprivilegedClone {
			why = "unprivileged user namespaces are disabled"
		}
	case Refused:
		why = "user namespaces are not allowed for this process"
	case Limit:
		why = "a namespace limit is reached"
	case Unsupported:
		why = "the kernel does not support user namespaces (CONFIG_USER_NS) or the others asked for"
	case NoFilesystem:
		why = "this kernel has no binfmt_misc file system"
	case MountRefused:
		why = "the new user namespace may not mount: an AppArmor, SELinux or seccomp policy (a container's, for one) may forbid it"
		if e.Sysctl == SysctlAppArmorRestricted {
			why = "AppArmor restricts unprivileged user namespaces here (" + e.Sysctl + " is 1)"
		}
	default:
		why = "private binfmt_misc instances are not available"
	}
	if e.Errno == 0 {
		return why + ": " + errString(e.Err)
	}
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op + ": ")
	}
	b.WriteString(errString(e.Err))
	fmt.Fprintf(&b, " (%s): %s", errnoName(e.Errno), why)
	return b.String()
}

// Unwrap returns Err and Errno, so that errors.Is(err, syscall.EPERM)
// holds for a refusal.
func (e *UnavailableError) Unwrap() []error {
	var errs []error
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	if e.Errno != 0 {
		errs = append(errs, e.Errno)
	}
	return errs
}

func errString(err error) string {
	if err == nil {
		return "unavailable"
	}
	return err.Error()
}

// errnoName returns the symbolic name of errno, such as "EPERM".
func errnoName(errno syscall.Errno) string {
	if name := unix.ErrnoName(errno); name != "" {
		return name
	}
	return "errno " + strconv.Itoa(int(errno))
}

// CheckHost reports, without side effects, whether this host gives this
// process the namespaces spec asks for: nil, a [*KernelTooOldError] for a
// kernel older than 6.7, or an [*UnavailableError] with Reason [Disabled]
// naming the sysctl that turns them off. Some refusals show only when the
// namespaces are created (an AppArmor or seccomp policy, a namespace limit,
// the binfmt_misc file system missing): [Start] reports those.
func CheckHost(spec Spec) error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	if err := checkKernelRelease(unix.ByteSliceToString(uts.Release[:])); err != nil {
		return err
	}
	return checkSysctls("/proc/sys", os.Geteuid(), spec.PID)
}

// checkKernelRelease returns a *KernelTooOldError for a release older than
// 6.7. A release it cannot parse passes: the mount fails later if it must.
func checkKernelRelease(release string) error {
	major, minor, ok := parseKernelRelease(release)
	if ok && (major < MinKernelMajor || major == MinKernelMajor && minor < MinKernelMinor) {
		return &KernelTooOldError{Release: release}
	}
	return nil
}

// parseKernelRelease parses the major and minor number of a kernel release
// such as "6.7.0-1-amd64".
func parseKernelRelease(release string) (major, minor int, ok bool) {
	fields := strings.SplitN(release, ".", 3)
	if len(fields) < 2 {
		return 0, 0, false
	}
	num := func(s string) (int, bool) {
		if end := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }); end >= 0 {
			s = s[:end]
		}
		n, err := strconv.Atoi(s)
		return n, err == nil
	}
	major, ok1 := num(fields[0])
	minor, ok2 := num(fields[1])
	return major, minor, ok1 && ok2
}

// checkSysctls returns an *UnavailableError when a sysctl under procSys
// (/proc/sys) disables the namespaces a process with effective uid euid
// needs; pid adds PID namespaces.
func checkSysctls(procSys string, euid int, pid bool) error {
	limits := []string{SysctlMaxUserNamespaces, SysctlMaxMntNamespaces}
	if pid {
		limits = append(limits, SysctlMaxPIDNamespaces)
	}
	for _, name := range limits {
		p := sysctlPath(procSys, name)
		if n, ok := readSysctlInt(p); ok && n == 0 {
			return &UnavailableError{Reason: Disabled, Sysctl: name, Allow: "10000", Err: fmt.Errorf("%s is 0", p)}
		}
	}
	p := sysctlPath(procSys, SysctlUnprivilegedClone)
	if n, ok := readSysctlInt(p); ok && n == 0 && euid != 0 {
		return &UnavailableError{Reason: Disabled, Sysctl: SysctlUnprivilegedClone, Allow: "1", Err: fmt.Errorf("%s is 0", p)}
	}
	return nil
}

// sysctlPath returns the file of the sysctl name under procSys.
func sysctlPath(procSys, name string) string {
	return filepath.Join(procSys, strings.ReplaceAll(name, ".", "/"))
}

// readSysctlInt reads a sysctl file holding one integer.
func readSysctlInt(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return n, err == nil
}

// CheckFilesystem returns nil when /proc/filesystems lists binfmt_misc,
// and otherwise an [*UnavailableError] with Reason [NoFilesystem]. A
// kernel whose binfmt_misc is a module not loaded yet may still load it
// when it is mounted, so [Start] does not call it; tests do, to fail early
// with the reason.
func CheckFilesystem() error { return checkFilesystem("/proc/filesystems") }

func checkFilesystem(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && fields[len(fields)-1] == "binfmt_misc" {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return &UnavailableError{Reason: NoFilesystem, Err: fmt.Errorf("binfmt_misc is not listed in %s", path)}
}

// namespaceError explains err, an error of starting a process in new
// namespaces (op says which): an *UnavailableError for the errnos that
// say why they are not available, err wrapped with op otherwise.
func namespaceError(op string, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("%s: %w", op, err)
	}
	var reason Reason
	switch errno {
	case syscall.EPERM, syscall.EACCES:
		reason = Refused
	case syscall.ENOSPC, syscall.EUSERS:
		reason = Limit
	case syscall.EINVAL:
		reason = Unsupported
	default:
		return fmt.Errorf("%s: %w (%s): the kernel refused to create the namespaces", op, err, errnoName(errno))
	}
	return &UnavailableError{Reason: reason, Op: op, Errno: errno, Err: err}
}

// mountError explains err, an error of mount(2) in the new namespaces (op
// says which mount): an *UnavailableError when the kernel has no such file
// system or the namespace may not mount, err wrapped with op otherwise.
// procSys is /proc/sys (where the AppArmor restriction shows).
func mountError(procSys, op string, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("%s: %w", op, err)
	}
	switch errno {
	case syscall.ENODEV:
		return &UnavailableError{Reason: NoFilesystem, Op: op, Errno: errno, Err: err}
	case syscall.EPERM, syscall.EACCES:
		e := &UnavailableError{Reason: MountRefused, Op: op, Errno: errno, Err: err}
		if n, ok := readSysctlInt(sysctlPath(procSys, SysctlAppArmorRestricted)); ok && n != 0 {
			e.Sysctl, e.Allow = SysctlAppArmorRestricted, "0"
		}
		return e
	}
	return fmt.Errorf("%s: %w", op, err)
}
