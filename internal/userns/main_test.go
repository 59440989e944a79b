package userns

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// init makes this test binary usable as the first process of the
// namespaces the tests start: Start re-executes /proc/self/exe.
func init() { MaybeRunChild() }

// TestMain checks that the tests leave the host's binfmt_misc as they
// found it: its mounts, and what /proc/sys/fs/binfmt_misc holds.
func TestMain(m *testing.M) {
	before := hostBinfmt()
	code := m.Run()
	if after := hostBinfmt(); !slices.Equal(before, after) {
		fmt.Fprintf(os.Stderr, "FAIL: the host's binfmt_misc changed:\nbefore: %q\nafter:  %q\n", before, after)
		code = 1
	}
	os.Exit(code)
}

// hostBinfmt describes the binfmt_misc this process sees: the binfmt_misc
// lines of /proc/self/mountinfo and the files of /proc/sys/fs/binfmt_misc.
func hostBinfmt() []string {
	var view []string
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, "binfmt_misc") {
			view = append(view, strings.TrimSpace(line))
		}
	}
	des, _ := os.ReadDir("/proc/sys/fs/binfmt_misc")
	for _, de := range des {
		view = append(view, de.Name())
	}
	return view
}
