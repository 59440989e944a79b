package binfmt

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Entry is a registered handler as its file in a binfmt_misc mount shows it.
type Entry struct {
	Spec
	Enabled bool
}

// EntryError says what is wrong in an entry file.
type EntryError struct {
	Name   string
	Line   int
	Reason string
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("binfmt_misc entry %s: line %d: %s", e.Name, e.Line, e.Reason)
}

// ParseEntry reads the text of the entry file called name:
//
//	enabled
//	interpreter /usr/bin/qemu-aarch64-static
//	flags: PF
//	offset 0
//	magic 7f454c46...
//	mask ffffffff...
//
// or, for an extension handler, "extension .ext" instead of the last three
// lines.
func ParseEntry(name string, text []byte) (Entry, error) {
	e := Entry{Spec: Spec{Name: name}}
	bad := func(n int, format string, args ...any) (Entry, error) {
		return Entry{}, &EntryError{Name: name, Line: n, Reason: fmt.Sprintf(format, args...)}
	}
	lines := strings.Split(strings.TrimSuffix(string(text), "\n"), "\n")
	seen := map[string]bool{}
	for i, l := range lines {
		n := i + 1
		if i == 0 {
			switch l {
			case "enabled":
				e.Enabled = true
			case "disabled":
			default:
				return bad(n, "%q is not enabled or disabled", l)
			}
			continue
		}
		key, val, ok := strings.Cut(l, " ")
		if !ok && key != "flags:" {
			return bad(n, "%q has no value", l)
		}
		if seen[key] {
			return bad(n, "%s given twice", key)
		}
		seen[key] = true
		var err error
		switch key {
		case "interpreter":
			e.Interpreter = val
		case "flags:":
			if e.Flags, err = ParseFlags(val); err != nil {
				return bad(n, "%v", err)
			}
		case "offset":
			if e.Offset, err = strconv.Atoi(val); err != nil || e.Offset < 0 {
				return bad(n, "offset %q is not a number", val)
			}
			e.Type = Magic
		case "magic":
			if e.Magic, err = hex.DecodeString(val); err != nil {
				return bad(n, "magic %q is not hex", val)
			}
			e.Type = Magic
		case "mask":
			if e.Mask, err = hex.DecodeString(val); err != nil {
				return bad(n, "mask %q is not hex", val)
			}
		case "extension":
			if !strings.HasPrefix(val, ".") {
				return bad(n, "extension %q does not start with '.'", val)
			}
			e.Type, e.Magic = Extension, []byte(val[1:])
		default:
			return bad(n, "unknown key %q", key)
		}
	}
	switch {
	case !seen["interpreter"] || e.Interpreter == "":
		return bad(len(lines), "no interpreter")
	case seen["extension"] && (seen["magic"] || seen["offset"] || seen["mask"]):
		return bad(len(lines), "needs either extension or offset and magic, not both")
	case !seen["extension"] && (!seen["magic"] || !seen["offset"]):
		return bad(len(lines), "needs both offset and magic")
	case seen["mask"] && len(e.Mask) != len(e.Magic):
		return bad(len(lines), "mask and magic differ in length")
	}
	return e, nil
}

// Text returns the entry file's text as the kernel writes it.
func (e Entry) Text() string {
	var b strings.Builder
	if e.Enabled {
		b.WriteString("enabled\n")
	} else {
		b.WriteString("disabled\n")
	}
	fmt.Fprintf(&b, "interpreter %s\nflags: %s\n", e.Interpreter, e.Flags)
	if e.Type == Extension {
		fmt.Fprintf(&b, "extension .%s\n", e.Magic)
		return b.String()
	}
	fmt.Fprintf(&b, "offset %d\nmagic %x\n", e.Offset, e.Magic)
	if e.Mask != nil {
		fmt.Fprintf(&b, "mask %x\n", e.Mask)
	}
	return b.String()
}
