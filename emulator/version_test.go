package emulator

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mabd/binfmt"
)

var versionPattern = regexp.MustCompile(`^\d+\.\d+(\.\d+)?$`)

func TestVersionReal(t *testing.T) {
	qemu := requireQEMU(t)
	v, err := Version(context.Background(), qemu)
	if err != nil {
		t.Fatalf("Version(%s): %v", qemu, err)
	}
	if !versionPattern.MatchString(v) {
		t.Errorf("Version(%s) = %q, want match for %v", qemu, v, versionPattern)
	}
	if !PreservesArgv0(v) {
		t.Logf("note: %s version %s does not honour the P flag", qemu, v)
	}
}

func TestVersionDeadline(t *testing.T) {
	p := filepath.Join(t.TempDir(), "qemu-slow")
	writeFile(t, p, []byte("#!/bin/sh\nsleep 100\necho 'qemu-slow version 9.9.9'\n"), 0o755)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	v, err := Version(ctx, p)
	if err == nil {
		t.Fatalf("Version(slow) = %q, nil; want a deadline error", v)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Version(slow) error = %v, want it to wrap context.DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), p) {
		t.Errorf("Version(slow) error %q does not name the path", err)
	}
}

func TestVersionCancelled(t *testing.T) {
	p := filepath.Join(t.TempDir(), "qemu-slow")
	writeFile(t, p, []byte("#!/bin/sh\nsleep 100\n"), 0o755)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Version(ctx, p); !errors.Is(err, context.Canceled) {
		t.Errorf("Version(cancelled ctx) error = %v, want context.Canceled", err)
	}
}

func TestVersionErrors(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, []byte("#!/bin/sh\n"+body), 0o755)
		return p
	}
	tests := []struct {
		name string
		path string
		want []string // substrings of the error
		// unknown: the error matches ErrUnknownVersion
		unknown bool
	}{
		{
			name:    "junk output",
			path:    script("junk", "echo '  hello world, not a version  '\n"),
			want:    []string{"--version: cannot parse version from output", `"hello world, not a version"`},
			unknown: true,
		},
		{
			name:    "no output",
			path:    script("silent", "exit 0\n"),
			want:    []string{"cannot parse version from output \"\""},
			unknown: true,
		},
		{
			name:    "version on a later line",
			path:    script("late", "echo warning: something\necho 'qemu-x version 7.2.0'\n"),
			want:    []string{`"warning: something`},
			unknown: true,
		},
		{
			name: "non-zero exit quotes stderr",
			path: script("failing", "echo 'unknown option --version' >&2\nexit 3\n"),
			want: []string{"exit status 3", "unknown option --version"},
		},
		{
			name: "missing",
			path: filepath.Join(dir, "missing"),
			want: []string{"no such file"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Version(context.Background(), tt.path)
			if err == nil {
				t.Fatalf("Version = %q, nil; want error", v)
			}
			if errors.Is(err, ErrUnknownVersion) != tt.unknown {
				t.Errorf("errors.Is(%v, ErrUnknownVersion) = %v, want %v", err, !tt.unknown, tt.unknown)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "run "+tt.path+" --version: ") {
				t.Errorf("error %q lacks operation and path", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestVersionLongOutputTrimmed(t *testing.T) {
	p := filepath.Join(t.TempDir(), "chatty")
	writeFile(t, p, []byte("#!/bin/sh\nhead -c 1000000 /dev/zero | tr '\\0' x\n"), 0o755)
	_, err := Version(context.Background(), p)
	if err == nil || len(err.Error()) > 400 {
		t.Errorf("Version(chatty) error = %.500v..., want a short parse error", err)
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		out                     string
		wantVersion, wantTarget string // "" means no parse
	}{
		{"qemu-aarch64 version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n", "7.2.22", "aarch64"},
		{"qemu-arm version 2.11.1(Debian 1:2.11+dfsg-1ubuntu7.41)\n", "2.11.1", "arm"},
		{"qemu-riscv64 version 8.2.0\n", "8.2.0", "riscv64"},
		{"qemu-x86_64 version 9.1\n", "9.1", "x86_64"},
		{"qemu-x86_64 version 8.1.92 (v8.2.0-rc2)\n", "8.1.92", "x86_64"},
		{"\n\nqemu-ppc64le version 6.0.0 (qemu-6.0.0-1.fc34)\n", "6.0.0", "ppc64le"},
		{"qemu-aarch64 version 7.2.22\r\n", "7.2.22", "aarch64"},
		{"qemu-aarch64_be version 10.0.13 (Debian 1:10.0.13+ds-0+deb13u1)\n", "10.0.13", "aarch64_be"},
		{"", "", ""},
		{"junk\n", "", ""},
		{"echo (GNU coreutils) 9.1\n", "", ""},
		{"qemu-aarch64 version \n", "", ""},
		{"qemu-aarch64 version 7\n", "", ""},
		{"qemu-aarch64 version 7.2.22.1\n", "", ""},
		{"warning\nqemu-aarch64 version 7.2.22\n", "", ""},
		{"QEMU emulator version 7.2.22\n", "", ""},
		{"qemu- version 7.2.22\n", "", ""},
	}
	for _, tt := range tests {
		v, target, ok := parseVersion(tt.out)
		if v != tt.wantVersion || target != tt.wantTarget || ok != (tt.wantVersion != "") {
			t.Errorf("parseVersion(%q) = %q, %q, %v; want %q, %q", tt.out, v, target, ok, tt.wantVersion, tt.wantTarget)
		}
	}
}

// TestInspectReal: every emulator of qemu-user-static names its own
// architecture, under any file name.
func TestInspectReal(t *testing.T) {
	requireQEMU(t)
	n := 0
	for _, a := range binfmt.Arches() {
		p := "/usr/bin/" + staticName(a.Name)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		n++
		v, target, err := Inspect(context.Background(), p)
		if err != nil || target != a.Name || !versionPattern.MatchString(v) {
			t.Errorf("Inspect(%s) = %q, %q, %v; want a version and target %q", p, v, target, err, a.Name)
		}
	}
	if n < 10 {
		t.Errorf("only %d emulators of the table in /usr/bin: install qemu-user-static", n)
	}
	// Renamed, qemu-arm-static still says arm.
	renamed := filepath.Join(t.TempDir(), "qemu-aarch64-static")
	if err := os.Symlink("/usr/bin/qemu-arm-static", renamed); err != nil {
		t.Fatal(err)
	}
	if _, target, err := Inspect(context.Background(), renamed); err != nil || target != "arm" {
		t.Errorf("Inspect(qemu-arm-static named qemu-aarch64-static) target = %q, %v; want arm", target, err)
	}
}

func TestPreservesArgv0(t *testing.T) {
	tests := []struct {
		version string
		want    bool
	}{
		{"", false},
		{"unknown", false},
		{"2.11.1", false},
		{"5.2.0", false},
		{"5.99.1", false},
		{"6.0", true},
		{"6.0.0", true},
		{"6.2.0", true},
		{"7.2.22", true},
		{"10.0.0", true},
		{"6", false},
		{"v6.0.0", false},
		{"60", false},
	}
	for _, tt := range tests {
		if got := PreservesArgv0(tt.version); got != tt.want {
			t.Errorf("PreservesArgv0(%q) = %v, want %v", tt.version, got, tt.want)
		}
	}
}
