package userns

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestParseKernelRelease(t *testing.T) {
	for _, tc := range []struct {
		release      string
		major, minor int
		ok           bool
	}{
		{"6.7.0-1-amd64", 6, 7, true},
		{"6.18.44-fc-v657", 6, 18, true},
		{"5.15.0-91-generic", 5, 15, true},
		{"6.6", 6, 6, true},
		{"6.10rc1", 6, 10, true},
		{"7.0", 7, 0, true},
		{"garbage", 0, 0, false},
		{"6.x", 6, 0, false},
		{"", 0, 0, false},
	} {
		major, minor, ok := parseKernelRelease(tc.release)
		if major != tc.major || minor != tc.minor || ok != tc.ok {
			t.Errorf("parseKernelRelease(%q) = %d, %d, %v, want %d, %d, %v", tc.release, major, minor, ok, tc.major, tc.minor, tc.ok)
		}
	}
}

func TestCheckKernelRelease(t *testing.T) {
	for _, tc := range []struct {
		release string
		old     bool
	}{
		{"6.7.0", false},
		{"6.7.0-1-amd64", false},
		{"6.18.44-fc-v657", false},
		{"7.0", false},
		{"6.6.30-generic", true},
		{"5.10.0-28-amd64", true},
		{"4.19.0", true},
		{"garbage", false}, // unknown: the mount decides
		{"", false},
	} {
		err := checkKernelRelease(tc.release)
		var ke *KernelTooOldError
		if got := errors.As(err, &ke); got != tc.old || got && ke.Release != tc.release {
			t.Errorf("checkKernelRelease(%q) = %v, want too old: %v", tc.release, err, tc.old)
		}
	}
	err := checkKernelRelease("6.1.0-18-amd64")
	want := "binfmt_misc is per user namespace only since Linux 6.7; this kernel is 6.1.0-18-amd64"
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}

func TestCheckHost(t *testing.T) {
	// The suite runs on Linux 6.7 or newer with user namespaces enabled.
	for _, spec := range []Spec{{}, {PID: true}} {
		if err := CheckHost(spec); err != nil {
			t.Errorf("CheckHost(%+v): %v", spec, err)
		}
	}
	if err := CheckFilesystem(); err != nil {
		t.Errorf("CheckFilesystem: %v", err)
	}
}

func TestCheckSysctls(t *testing.T) {
	for _, tc := range []struct {
		name   string
		files  map[string]string
		euid   int
		pid    bool
		sysctl string // "" means no error
		allow  string
		msg    string // %s is the directory
	}{
		{name: "enabled", files: map[string]string{"user/max_user_namespaces": "96365", "user/max_mnt_namespaces": "96365", "user/max_pid_namespaces": "96365", "kernel/unprivileged_userns_clone": "1"}, euid: 1000, pid: true},
		{name: "no files", euid: 1000, pid: true},
		{name: "garbage", files: map[string]string{"user/max_user_namespaces": "many"}, euid: 1000},
		{"max_user_namespaces 0", map[string]string{"user/max_user_namespaces": "0"}, 1000, false,
			SysctlMaxUserNamespaces, "10000", "user namespaces are disabled: %s/user/max_user_namespaces is 0"},
		{"max_mnt_namespaces 0", map[string]string{"user/max_user_namespaces": "10", "user/max_mnt_namespaces": "0\n"}, 0, false,
			SysctlMaxMntNamespaces, "10000", "user namespaces are disabled: %s/user/max_mnt_namespaces is 0"},
		{name: "max_pid_namespaces 0 without PID", files: map[string]string{"user/max_pid_namespaces": "0"}, euid: 1000},
		{"max_pid_namespaces 0", map[string]string{"user/max_pid_namespaces": "0"}, 1000, true,
			SysctlMaxPIDNamespaces, "10000", "user namespaces are disabled: %s/user/max_pid_namespaces is 0"},
		{"unprivileged_userns_clone 0", map[string]string{"kernel/unprivileged_userns_clone": "0"}, 1000, false,
			SysctlUnprivilegedClone, "1", "unprivileged user namespaces are disabled: %s/kernel/unprivileged_userns_clone is 0"},
		{name: "unprivileged_userns_clone 0 as root", files: map[string]string{"kernel/unprivileged_userns_clone": "0"}, euid: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for f, v := range tc.files {
				writeFile(t, filepath.Join(dir, f), v+"\n")
			}
			err := checkSysctls(dir, tc.euid, tc.pid)
			if tc.sysctl == "" {
				if err != nil {
					t.Errorf("error %v, want none", err)
				}
				return
			}
			var ue *UnavailableError
			if !errors.As(err, &ue) || ue.Reason != Disabled || ue.Sysctl != tc.sysctl || ue.Allow != tc.allow || ue.Errno != 0 {
				t.Fatalf("error %#v, want Disabled by %s (allowed by %s)", err, tc.sysctl, tc.allow)
			}
			if want := strings.ReplaceAll(tc.msg, "%s", dir); err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
		})
	}
}

func TestCheckFilesystem(t *testing.T) {
	dir := t.TempDir()
	with := filepath.Join(dir, "with")
	writeFile(t, with, "nodev\tsysfs\nnodev\tproc\nnodev\tbinfmt_misc\n\text4\n")
	if err := checkFilesystem(with); err != nil {
		t.Errorf("with binfmt_misc: %v", err)
	}
	without := filepath.Join(dir, "without")
	writeFile(t, without, "nodev\tsysfs\nnodev\tbinfmt_misc_not\n\text4\n")
	err := checkFilesystem(without)
	var ue *UnavailableError
	if !errors.As(err, &ue) || ue.Reason != NoFilesystem || err.Error() != "this kernel has no binfmt_misc file system: binfmt_misc is not listed in "+without {
		t.Errorf("without binfmt_misc: %v", err)
	}
	if err := checkFilesystem(filepath.Join(dir, "absent")); err == nil || errors.As(err, &ue) {
		t.Errorf("unreadable: %v, want an error that is no UnavailableError", err)
	}
}

func TestNamespaceError(t *testing.T) {
	forkErr := func(errno syscall.Errno) error {
		return &fs.PathError{Op: "fork/exec", Path: "/proc/self/exe", Err: errno}
	}
	for _, tc := range []struct {
		err    error
		reason Reason // 0: no UnavailableError
		msg    string
	}{
		{forkErr(syscall.EPERM), Refused,
			"create user and mount namespaces: fork/exec /proc/self/exe: operation not permitted (EPERM): user namespaces are not allowed for this process"},
		{forkErr(syscall.EACCES), Refused, "(EACCES): user namespaces are not allowed for this process"},
		{forkErr(syscall.ENOSPC), Limit, "(ENOSPC): a namespace limit is reached"},
		{forkErr(syscall.EUSERS), Limit, "(EUSERS): a namespace limit is reached"},
		{forkErr(syscall.EINVAL), Unsupported, "(EINVAL): the kernel does not support user namespaces (CONFIG_USER_NS)"},
		{forkErr(syscall.ENOMEM), 0, "create user and mount namespaces: fork/exec /proc/self/exe: cannot allocate memory (ENOMEM): the kernel refused to create the namespaces"},
		{errors.New("other"), 0, "create user and mount namespaces: other"},
	} {
		err := NamespaceError(Spec{}, tc.err)
		var ue *UnavailableError
		if got := errors.As(err, &ue); got != (tc.reason != 0) || got && (ue.Reason != tc.reason || ue.Op != "create user and mount namespaces") {
			t.Errorf("NamespaceError(%v) = %#v, want reason %d", tc.err, err, tc.reason)
		}
		if !strings.Contains(err.Error(), tc.msg) || !errors.Is(err, tc.err) {
			t.Errorf("NamespaceError(%v) = %q, want it to say %q and wrap the cause", tc.err, err, tc.msg)
		}
		var errno syscall.Errno
		if errors.As(tc.err, &errno) && !errors.Is(err, errno) {
			t.Errorf("NamespaceError(%v) does not match %v", tc.err, errno)
		}
	}
	if err := NamespaceError(Spec{PID: true}, syscall.EPERM); !strings.HasPrefix(err.Error(), "create user, mount and PID namespaces: ") {
		t.Errorf("with PID: %v", err)
	}
}

func TestMountError(t *testing.T) {
	plain := t.TempDir()
	apparmor := t.TempDir()
	writeFile(t, filepath.Join(apparmor, "kernel/apparmor_restrict_unprivileged_userns"), "1\n")
	const op = "mount binfmt_misc on /proc/sys/fs/binfmt_misc"
	for _, tc := range []struct {
		name    string
		procSys string
		err     error
		reason  Reason
		sysctl  string
		msg     string
	}{
		{"ENODEV", plain, syscall.ENODEV, NoFilesystem, "",
			op + ": no such device (ENODEV): this kernel has no binfmt_misc file system"},
		{"EPERM", plain, syscall.EPERM, MountRefused, "",
			op + ": operation not permitted (EPERM): the new user namespace may not mount: an AppArmor, SELinux or seccomp policy (a container's, for one) may forbid it"},
		{"EPERM under AppArmor", apparmor, syscall.EPERM, MountRefused, SysctlAppArmorRestricted,
			op + ": operation not permitted (EPERM): AppArmor restricts unprivileged user namespaces here (kernel.apparmor_restrict_unprivileged_userns is 1)"},
		{"EACCES", plain, syscall.EACCES, MountRefused, "", "(EACCES): the new user namespace may not mount"},
		{"EBUSY", plain, syscall.EBUSY, 0, "", op + ": device or resource busy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := mountError(tc.procSys, op, tc.err)
			var ue *UnavailableError
			if got := errors.As(err, &ue); got != (tc.reason != 0) || got && (ue.Reason != tc.reason || ue.Sysctl != tc.sysctl || ue.Errno != tc.err) {
				t.Errorf("mountError = %#v, want reason %d, sysctl %q", err, tc.reason, tc.sysctl)
			}
			if got := err.Error(); !strings.Contains(got, tc.msg) || !errors.Is(err, tc.err) {
				t.Errorf("error %q, want it to say %q and wrap the errno", got, tc.msg)
			}
			if tc.sysctl != "" && ue.Allow != "0" {
				t.Errorf("Allow %q, want 0", ue.Allow)
			}
		})
	}
}

// TestReport: what the child reports comes back as the error it was.
func TestReport(t *testing.T) {
	for _, err := range []error{
		&UnavailableError{Reason: MountRefused, Op: "mount binfmt_misc on /x", Sysctl: SysctlAppArmorRestricted, Allow: "0", Errno: syscall.EPERM, Err: syscall.EPERM},
		&UnavailableError{Reason: NoFilesystem, Op: "mount binfmt_misc on /x", Errno: syscall.ENODEV, Err: syscall.ENODEV},
		&StartError{Program: "./prog", Err: syscall.EACCES},
		&StartError{Program: "prog", Err: syscall.ENOENT},
		errors.New("register qemu-aarch64 in the private binfmt_misc instance: no such file"),
	} {
		got := decodeReport(encodeReport(err))
		if got.Error() != err.Error() {
			t.Errorf("report of %q reads %q", err, got)
		}
		var errno syscall.Errno
		if errors.As(err, &errno) && !errors.Is(got, errno) {
			t.Errorf("report of %q: %v does not match %v", err, got, errno)
		}
		switch err.(type) {
		case *UnavailableError:
			if ue, ok := got.(*UnavailableError); !ok || *ue != *err.(*UnavailableError) {
				t.Errorf("report of %#v is %#v", err, got)
			}
		case *StartError:
			if se, ok := got.(*StartError); !ok || *se != *err.(*StartError) {
				t.Errorf("report of %#v is %#v", err, got)
			}
		}
	}
	if err := decodeReport([]byte("{garbage")); err == nil || !strings.Contains(err.Error(), "malformed report") {
		t.Errorf("garbage: %v", err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
