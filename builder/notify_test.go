package builder

import (
	"strings"
	"testing"
)

const unixTable = `Num       RefCount Protocol Flags    Type St Inode Path
00000000aa5ee660: 00000002 00000000 00010000 0001 01 756978 /run/mabd/buildkitd.sock
00000000f5367eed: 00000003 00000000 00000000 0001 03 756980 /run/mabd/buildkitd.sock
00000000f5367eee: 00000003 00000000 00000000 0001 03 756981 /run/mabd/buildkitd.sock
00000000f5367eef: 00000003 00000000 00000000 0001 03 756982 /run/mabd/mabd.sock
00000000f5367ef0: 00000003 00000000 00000000 0001 03 756983
`

func TestCountConnected(t *testing.T) {
	for _, c := range []struct {
		table, socket string
		want          int
	}{
		{unixTable, "/run/mabd/buildkitd.sock", 2}, // the listener (01) is not a client
		{unixTable, "/run/mabd/mabd.sock", 1},
		{unixTable, "/run/other.sock", 0},
		{"", "/run/mabd/buildkitd.sock", 0},
		{strings.ReplaceAll(unixTable, " 03 ", " 04 "), "/run/mabd/buildkitd.sock", 0},
	} {
		if got := countConnected([]byte(c.table), c.socket); got != c.want {
			t.Errorf("countConnected(%q) = %d, want %d", c.socket, got, c.want)
		}
	}
}

// FuzzCountConnected: any table reads without a panic, and counts no more
// lines than it has.
func FuzzCountConnected(f *testing.F) {
	f.Add([]byte(unixTable), "/run/mabd/buildkitd.sock")
	f.Add([]byte("a b c d e 03 f /x\n"), "/x")
	f.Fuzz(func(t *testing.T, table []byte, socket string) {
		if n := countConnected(table, socket); n < 0 || n > strings.Count(string(table), "\n")+1 {
			t.Errorf("count %d for %d lines", n, strings.Count(string(table), "\n")+1)
		}
	})
}
