package emulator_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mabd/emulator"
	"mabd/emulator/emulatortest"
)

// TestFindCandidates finds the emulators of aarch64 across directories:
// one per file (a symlink to one found adds nothing), in the order Find
// prefers them, each with its version and source; those that must not be
// registered are refused, with why, and never run.
func TestFindCandidates(t *testing.T) {
	old, newer := emulatortest.First(t, "aarch64"), emulatortest.Second(t, "aarch64")
	a, b := emulatortest.Dir(t), emulatortest.Dir(t)
	emulatortest.Copy(t, old, a, "qemu-aarch64-static")
	if err := os.Symlink("qemu-aarch64-static", filepath.Join(a, "qemu-aarch64")); err != nil {
		t.Fatal(err)
	}
	emulatortest.Copy(t, newer, b, "qemu-aarch64")
	// In bad: one anyone may replace, and an arm emulator named as
	// aarch64's.
	bad, _ := emulatortest.Untrusted(t, old, "qemu-aarch64-static")
	emulatortest.Copy(t, emulatortest.First(t, "arm"), bad, "qemu-aarch64")
	script := emulatortest.Dir(t)
	if err := os.WriteFile(filepath.Join(script, "qemu-aarch64-static"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	missingPin := filepath.Join(b, "qemu-aarch64-10.1")

	type want struct {
		path, source, version string
		refused               string // what Refused says, "" when usable
	}
	for _, tc := range []struct {
		name string
		dirs []string
		pins map[string]string
		want []want
	}{
		{"two QEMUs", []string{a, b}, nil, []want{
			{a + "/qemu-aarch64-static", a, "7.2.22", ""},
			{b + "/qemu-aarch64", b, "10.0.13", ""},
		}},
		{"order of the directories", []string{b, a}, nil, []want{
			{b + "/qemu-aarch64", b, "10.0.13", ""},
			{a + "/qemu-aarch64-static", a, "7.2.22", ""},
		}},
		{"refused", []string{bad, script}, nil, []want{
			{bad + "/qemu-aarch64-static", bad, "", "is writable by everyone (mode 0777)"},
			{bad + "/qemu-aarch64", bad, "7.2.22", `is QEMU's arm emulator (its --version says "qemu-arm"), not aarch64's`},
			{script + "/qemu-aarch64-static", script, "", "cannot be the aarch64 emulator: not an ELF executable"},
		}},
		{"pin first, found once", []string{a, b}, map[string]string{"aarch64": b + "/qemu-aarch64"}, []want{
			{b + "/qemu-aarch64", emulator.SourcePin, "10.0.13", ""},
			{a + "/qemu-aarch64-static", a, "7.2.22", ""},
		}},
		{"pin to a missing file", []string{a}, map[string]string{"aarch64": missingPin}, []want{
			{missingPin, emulator.SourcePin, "", "the emulator pinned for aarch64, " + missingPin + ", does not exist: install it there or remove the pin"},
			{a + "/qemu-aarch64-static", a, "7.2.22", ""},
		}},
		{"pin to a directory", []string{emulatortest.Dir(t)}, map[string]string{"aarch64": a}, []want{
			{a, emulator.SourcePin, "", "the emulator pinned for aarch64, " + a + ": not a regular file"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all, err := emulator.FindAllCandidates(context.Background(), []string{"aarch64", "riscv64"}, tc.dirs, tc.pins, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := all["riscv64"]; ok {
				t.Errorf("riscv64 has candidates %v, want none", all["riscv64"])
			}
			got := all["aarch64"]
			if len(got) != len(tc.want) {
				t.Fatalf("%d candidates %+v, want %d", len(got), got, len(tc.want))
			}
			for i, w := range tc.want {
				c := got[i]
				if c.Path != w.path || c.Source != w.source || c.Version != w.version || c.Arch != "aarch64" {
					t.Errorf("candidate %d: %s from %s, version %q; want %s from %s, %q", i, c.Path, c.Source, c.Version, w.path, w.source, w.version)
				}
				switch {
				case w.refused == "" && !c.Usable():
					t.Errorf("candidate %d (%s) refused: %v", i, c.Path, c.Refused)
				case w.refused != "" && (c.Usable() || !strings.Contains(c.Refused.Error(), w.refused)):
					t.Errorf("candidate %d (%s): refused %v, want it to say %q", i, c.Path, c.Refused, w.refused)
				case w.refused == "" && (!c.Static || c.ID == emulator.FileID{}):
					t.Errorf("candidate %d (%s): static %v, id %+v", i, c.Path, c.Static, c.ID)
				}
			}
		})
	}
	var pe *emulator.PinError
	c := emulator.PinnedCandidate(context.Background(), "aarch64", missingPin, nil)
	if !errors.As(c.Refused, &pe) || !errors.Is(c.Refused, os.ErrNotExist) {
		t.Errorf("a pin to a missing file: %#v, want a *PinError matching fs.ErrNotExist", c.Refused)
	}
	if _, err := emulator.FindCandidates(context.Background(), "../x", nil, nil); err == nil {
		t.Error("FindCandidates(\"../x\"): no error")
	}
}
