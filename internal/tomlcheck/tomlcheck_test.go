package tomlcheck

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// The schema of these tests: a server's settings.

type settings struct {
	Name    string            `toml:"name"`
	Debug   bool              `toml:"debug"`
	Port    uint16            `toml:"port"`
	Ratio   float64           `toml:"ratio"`
	Tags    []string          `toml:"tags"`
	Timeout duration          `toml:"timeout"`
	Primary limits            `toml:"primary"`
	Backup  limits            `toml:"backup"`
	Env     map[string]string `toml:"env"`
	Skipped string            `toml:"-"`
}

type limits struct {
	MaxConns int      `toml:"max_conns"`
	Weights  []int    `toml:"weights"`
	Wait     duration `toml:"wait"`
}

// duration is a leaf: a struct in Go, a string ("2s") or 0 in TOML.
type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration", b)
	}
	d.Duration = v
	return nil
}

var schema = New[settings](Options{
	Leaves: []Leaf{{Type: reflect.TypeFor[duration](), What: `a duration like "2s"`, Check: func(v Value) error {
		if v.Kind == Integer && v.Text == "0" {
			return nil
		}
		if v.Kind != String {
			return v.WrongKind()
		}
		if _, err := time.ParseDuration(v.Text); err != nil {
			return fmt.Errorf("%q is not a duration", v.Text)
		}
		return nil
	}}},
	What: map[string]string{"env": `a table of NAME = "VALUE"`},
})

func TestDecode(t *testing.T) {
	doc := `name = "web"
debug = true
port = 8080
ratio = 2
tags = ["a", "b"]
timeout = "1m"
env = { HOME = "/root" }
backup.max_conns = 3

[primary]
max_conns = 10
weights = [1, 2]
wait = 0
`
	got := settings{Skipped: "kept", Backup: limits{Wait: duration{time.Second}}}
	lines, errs := schema.Decode("s.toml", []byte(doc), &got)
	if errs != nil {
		t.Fatal(Join(errs))
	}
	want := settings{
		Name: "web", Debug: true, Port: 8080, Ratio: 2, Tags: []string{"a", "b"}, Timeout: duration{time.Minute},
		Env:     map[string]string{"HOME": "/root"},
		Primary: limits{MaxConns: 10, Weights: []int{1, 2}},
		Backup:  limits{MaxConns: 3, Wait: duration{time.Second}},
		Skipped: "kept",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	for key, line := range map[string]int{"name": 1, "env": 7, "env.HOME": 7, "backup": 8, "backup.max_conns": 8, "primary": 10, "primary.wait": 13} {
		if lines[key] != line {
			t.Errorf("line of %s: %d, want %d", key, lines[key], line)
		}
	}
}

func TestKeys(t *testing.T) {
	want := []string{"name", "debug", "port", "ratio", "tags", "timeout",
		"primary", "primary.max_conns", "primary.weights", "primary.wait",
		"backup", "backup.max_conns", "backup.weights", "backup.wait", "env"}
	if got := schema.Keys(); !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestErrors(t *testing.T) {
	long := strings.Repeat("k", 100)
	tests := []struct {
		name string
		doc  string
		line int
		key  string
		msg  string // a part of the message
	}{
		// Unknown keys, with suggestions.
		{"typo", "\nnmae = \"x\"\n", 2, "nmae", `unknown key "nmae" (did you mean "name"?)`},
		{"typo in a table", "[primary]\nmax_con = 1\n", 2, "primary.max_con", `unknown key "primary.max_con" (did you mean "primary.max_conns"?)`},
		{"dashes", "[backup]\nmax-conns = 1\n", 2, "backup.max-conns", `unknown key "backup.max-conns" (did you mean "backup.max_conns"?)`},
		{"capitals", "Debug = true\n", 1, "Debug", `unknown key "Debug" (did you mean "debug"?)`},
		{"top-level key after a table", "[primary]\nmax_conns = 1\nport = 80\n", 3, "primary.port",
			`unknown key "primary.port" (did you mean "port"? top-level keys go before the first [table])`},
		{"top-level table name after a table", "[primary]\nenv = 1\n", 2, "primary.env",
			`unknown key "primary.env" (did you mean [env]? top-level keys go before the first [table])`},
		{"key of other tables", "wait = \"1s\"\n", 1, "wait", `unknown key "wait" (did you mean "primary.wait" or "backup.wait"?)`},
		{"short names need exact", "nam = 1\n", 1, "nam", `unknown key "nam"`},
		{"no near key", "frobnicate = 1\n", 1, "frobnicate", `unknown key "frobnicate"`},
		{"dotted unknown", "primry.max_conns = 1\n", 1, "primry", `unknown table [primry] (did you mean [primary]?)`},
		{"unknown table", "\n[primay]\n", 2, "primay", `unknown table [primay] (did you mean [primary]?)`},
		{"unknown array table", "[[mirrors]]\n", 1, "mirrors", `unknown table [mirrors]`},
		{"unknown subtable", "[primary.extra]\n", 1, "primary.extra", `unknown table [primary.extra]`},
		{"long key", long + " = 1\n", 1, long, `unknown key "` + strings.Repeat("k", 64) + `… (100 bytes)"`},

		// Values of the wrong type.
		{"bool as string", "debug = \"yes\"\n", 1, "debug", `key "debug": must be true or false, not a string`},
		{"string as integer", "name = 1\n", 1, "name", `key "name": must be a string, not an integer`},
		{"integer as float", "port = 1.5\n", 1, "port", `key "port": must be an integer, not a float`},
		{"float as boolean", "ratio = true\n", 1, "ratio", `key "ratio": must be a number, not a boolean`},
		{"date", "name = 2024-01-01\n", 1, "name", `key "name": must be a string, not a date or time`},
		{"list as string", "tags = \"a\"\n", 1, "tags", `key "tags": must be a list of strings, not a string`},
		{"list holding an integer", "tags = [\"a\", 2]\n", 1, "tags", `key "tags": must be a list of strings, not a list holding an integer`},
		{"list of integers holding a string", "[primary]\nweights = [1, \"2\"]\n", 2, "primary.weights", `must be a list of integers, not a list holding a string`},
		{"table as value", "primary = 3\n", 1, "primary", `key "primary": must be a table ([primary]), not an integer`},
		{"value as table", "[debug]\n", 1, "debug", `key "debug": must be true or false, not a table`},
		{"dotted key through a value", "debug.x = 1\n", 1, "debug", `must be true or false, not a table`},
		{"array of tables", "[[primary]]\n", 1, "primary", `must be a table ([primary]), not an array of tables`},
		{"map entry", "[env]\nHOME = 1\n", 2, "env.HOME", `key "env.HOME": must be a string, not an integer`},
		{"described by key", "env = [\"x\"]\n", 1, "env", `key "env": must be a table of NAME = "VALUE", not a list`},
		{"leaf kind", "timeout = 2\n", 1, "timeout", `key "timeout": must be a duration like "2s", not an integer`},
		{"leaf value", "[backup]\nwait = \"soon\"\n", 2, "backup.wait", `key "backup.wait": "soon" is not a duration`},
		{"leaf in an inline table", "backup = { wait = true }\n", 1, "backup.wait", `must be a duration like "2s", not a boolean`},

		// What only go-toml finds.
		{"duplicate key", "debug = true\nname = \"x\"\ndebug = false\n", 3, "debug", `key "debug": defined more than once (each key and table may appear once)`},
		{"duplicate table", "[primary]\n[backup]\n[primary]\n", 3, "primary", `defined more than once`},
		{"syntax", "debug = true\nname = \n", 2, "", `invalid TOML: `},
		{"unclosed table", "[primary\n", 1, "", `invalid TOML: `},
		{"out of range", "port = 70000\n", 1, "port", `key "port": `},

		// The first in the file.
		{"type error before syntax error", "debug = 1\n[primary\n", 1, "debug", `must be true or false, not an integer`},
		{"syntax error before type error", "[primary\ndebug = 1\n", 1, "", `invalid TOML`},
		{"duplicate before type error", "name = \"\"\nname = \"x\"\ndebug = 1\n", 2, "name", `defined more than once`},
		{"unknown key before type error", "debgu = true\ndebug = 1\n", 1, "debgu", `unknown key "debgu" (did you mean "debug"?)`},
		{"type error before unknown key", "debug = 1\ndebgu = true\n", 1, "debug", `must be true or false`},
		{"unknown key before syntax error", "debgu = true\n[x\n", 1, "debgu", `unknown key "debgu"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s settings
			_, errs := schema.Decode("s.toml", []byte(tt.doc), &s)
			if len(errs) == 0 {
				t.Fatalf("%q: no error", tt.doc)
			}
			e := errs[0]
			if e.File != "s.toml" || e.Line != tt.line || e.Key != tt.key {
				t.Errorf("%q: file %q line %d key %q, want s.toml %d %q (%v)", tt.doc, e.File, e.Line, e.Key, tt.line, tt.key, e)
			}
			if prefix := fmt.Sprintf("s.toml:%d: ", tt.line); !strings.HasPrefix(e.Error(), prefix) || !strings.Contains(e.Error(), tt.msg) {
				t.Errorf("%q: %q does not start with %q and say %q", tt.doc, e, prefix, tt.msg)
			}
		})
	}
}

// TestUnknownKeys: when the first error is an unknown key, every unknown
// key is reported, in the order of the file, each once.
func TestUnknownKeys(t *testing.T) {
	var s settings
	_, errs := schema.Decode("s.toml", []byte("debug = 1\n[primary]\nmax = 1\n[x]\nnmae = 1\n"), &s)
	if len(errs) != 1 || errs[0].Line != 1 {
		t.Fatalf("a bad value first: %v", Join(errs))
	}
	doc := "nmae = 1\ndebug = 1\n[primary]\nmax = 1\n[x]\nnmae = 1\n[backup]\nmax = 2\n"
	_, errs = schema.Decode("s.toml", []byte(doc), &s)
	want := `s.toml:1: unknown key "nmae" (did you mean "name"?)` + "\n" +
		`s.toml:4: unknown key "primary.max"` + "\n" +
		`s.toml:5: unknown table [x]` + "\n" +
		`s.toml:8: unknown key "backup.max"`
	if got := Join(errs); got == nil || got.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", got, want)
	}
	var e *Error
	if !errors.As(Join(errs), &e) || e.Line != 1 {
		t.Errorf("errors.As finds %v, want the first", e)
	}
}

// TestUnknownKeyOnce: an unknown key is reported once, however go-toml
// names it (in full for a dotted key, relative to an inline table).
func TestUnknownKeyOnce(t *testing.T) {
	for doc, want := range map[string]string{
		"primry.max_conns = 1\n":       `s.toml:1: unknown table [primry] (did you mean [primary]?)`,
		"backup = { wiat = \"1s\" }\n": `s.toml:1: unknown key "backup.wiat" (did you mean "backup.wait"?)`,
		"[primary]\nx.y = 1\n":         `s.toml:2: unknown table [primary.x]`,
		"backup.wiat = 0\n":            `s.toml:1: unknown key "backup.wiat" (did you mean "backup.wait"?)`,
		"timeout = { x = 1 }\n":        `s.toml:1: key "timeout": must be a duration like "2s", not a table`,
	} {
		var s settings
		_, errs := schema.Decode("s.toml", []byte(doc), &s)
		if got := Join(errs); got == nil || got.Error() != want {
			t.Errorf("%q:\ngot  %v\nwant %s", doc, got, want)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    *Error
		want string
	}{
		{&Error{File: "/etc/s.toml", Line: 5, Key: "timeout", Msg: `"fast" is not a duration`}, `/etc/s.toml:5: key "timeout": "fast" is not a duration`},
		{&Error{File: "/etc/s.toml", Key: "name", Msg: "bad"}, `/etc/s.toml: key "name": bad`},
		{&Error{File: "f", Line: 2, Msg: "invalid TOML: x"}, `f:2: invalid TOML: x`},
		{&Error{Line: 2, Key: "k", Msg: "bad"}, `line 2: key "k": bad`},
		{&Error{Key: "k", Msg: "bad"}, `key "k": bad`},
		{schema.unknownKey([]string{"nmae"}, 3, false), `line 3: unknown key "nmae" (did you mean "name"?)`},
		{schema.unknownKey([]string{"primary", "x"}, 0, true), `unknown table [primary.x]`},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
	if Join(nil) != nil {
		t.Error("Join(nil) is not nil")
	}
}

func TestNewPanics(t *testing.T) {
	type withPointer struct {
		P *string `toml:"p"`
	}
	type withIntMap struct {
		M map[int]string `toml:"m"`
	}
	type withTableList struct {
		L []limits `toml:"l"`
	}
	for name, f := range map[string]func(){
		"no struct":      func() { New[string](Options{}) },
		"pointer":        func() { New[withPointer](Options{}) },
		"map of ints":    func() { New[withIntMap](Options{}) },
		"list of tables": func() { New[withTableList](Options{}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "", 3},
		{"architecturs", "architectures", 1},
		{"kitten", "sitting", 3},
		{"flags", "flasg", 1},
		{"levle", "level", 1},
		{"ca", "abc", 3},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// FuzzDecode: any document gives no error and decodes as go-toml's strict
// decoder does, or gives errors of the file with lines in it.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"",
		"name = \"x\"\ndebug = true\nport = 1\nratio = 1.5\ntags = []\ntimeout = \"1s\"\n[primary]\nweights = [1]\n",
		"nmae = 1\n[primary]\nmax = 1\n",
		"env = { A = \"b\", C = 1 }\nbackup = { wait = 0 }\n",
		"[[primary]]\n[env.x]\na.b.c = [1, {a = 2}]\n",
		"debug = true\ndebug = true\n",
		"Debug = true\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got settings
		_, errs := schema.Decode("f.toml", data, &got)
		if len(errs) == 0 {
			var want settings
			if err := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(&want); err != nil {
				t.Fatalf("accepted, but go-toml says %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded %+v, go-toml %+v", got, want)
			}
			return
		}
		for _, e := range errs {
			if e.File != "f.toml" || e.Line < 0 || e.Line > bytes.Count(data, []byte("\n"))+1 {
				t.Fatalf("bad position in %+v", e)
			}
		}
	})
}
