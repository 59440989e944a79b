package host

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mabd/binfmt"
	"mabd/emulator"
)

// TestJudge is the table of what makes another tool's entry serve its
// architecture or not. It needs only files, not a binfmt_misc instance.
func TestJudge(t *testing.T) {
	aarch64, _ := binfmt.ArchByName("aarch64")
	const static = "/usr/bin/qemu-aarch64-static"
	if _, err := os.Stat(static); err != nil {
		t.Fatalf("%v: install qemu-user-static (make deps)", err)
	}
	entry := func(interp string, flags binfmt.Flags, edit func(*binfmt.Spec)) binfmt.Entry {
		s := aarch64.Spec(interp, flags)
		if edit != nil {
			edit(&s)
		}
		return binfmt.Entry{Spec: s, Enabled: true}
	}
	FP := binfmt.FixBinary | binfmt.PreserveArgv0
	other := filepath.Join(t.TempDir(), "aarch64-binfmt-P") // another tool's name for it
	if err := os.Symlink(static, other); err != nil {
		t.Fatal(err)
	}
	confDir := t.TempDir()
	deb := entry(other, FP|binfmt.OpenBinary, nil)
	if err := os.WriteFile(filepath.Join(confDir, "qemu-aarch64.conf"), []byte(deb.Line()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	disabled := entry(other, FP, nil)
	disabled.Enabled = false
	failed := &Verification{Results: []VerifyResult{{QEMUArch: "aarch64", State: emulator.StateFailed, Reason: "emulator crashed: killed by SIGSEGV"}}}
	tests := []struct {
		name   string
		e      binfmt.Entry
		last   *Verification
		serves bool
		ours   bool
		owner  string
		reason string
	}{
		{"mabd's", entry(static, FP, nil), nil, true, true, "mabd", ""},
		{"mabd's without F", entry(static, binfmt.PreserveArgv0, nil), nil, true, true, "mabd", ""},
		{"another tool's, registered from a binfmt.d file", deb, nil, true, false, "systemd-binfmt (" + filepath.Join(confDir, "qemu-aarch64.conf") + ")", ""},
		{"another tool's", entry(other, FP, nil), nil, true, false, "another tool", ""},
		{"without F", entry(other, binfmt.PreserveArgv0, nil), nil, false, false, "another tool", DefectNoFixBinary},
		{"disabled", disabled, nil, false, false, "another tool", DefectDisabled},
		{"a narrow mask", entry(other, FP, func(s *binfmt.Spec) { s.Mask[7] = 0xff }), nil, false, false, "another tool", DefectNarrowMask},
		{"another machine", entry(other, FP, func(s *binfmt.Spec) { s.Magic[18] = 0xf3 }), nil, false, false, "another tool", DefectSelectsOther},
		{"too broad", entry(other, FP, func(s *binfmt.Spec) { s.Mask[18], s.Mask[4] = 0, 0 }), nil, false, false, "another tool", DefectTooBroad},
		{"a missing interpreter", entry("/nonexistent/qemu-x", FP, nil), nil, false, false, "another tool", DefectMissing},
		{"a directory for an interpreter", entry("/tmp", FP, nil), nil, false, false, "another tool", DefectNotEmulator},
		{"a dynamic interpreter", entry("/bin/ls", FP, nil), nil, false, false, "another tool", DefectDynamic},
		{"failed verification", entry(other, FP, nil), failed, false, false, "another tool", DefectFailedVerify},
		{"mabd's, failed verification", entry(static, FP, nil), failed, false, true, "mabd", DefectFailedVerify},
	}
	h := Host{ConfDirs: []string{confDir}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := h.Judge(aarch64, tt.e, tt.last)
			if j.Serves != tt.serves || j.Ours != tt.ours || j.Owner != tt.owner || !strings.HasPrefix(j.Reason, tt.reason) {
				t.Fatalf("Judge = %+v; want serves %v, ours %v, owner %q, reason %q", j, tt.serves, tt.ours, tt.owner, tt.reason)
			}
			if !j.Serves && !strings.Contains(j.Detail, j.Reason) {
				t.Errorf("the detail %q does not give the reason", j.Detail)
			}
		})
	}
}
