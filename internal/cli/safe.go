package cli

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxShown bounds a string from outside (a state file, an entry, a
// registry) in mabd's readable output.
const maxShown = 4096

// Safe makes a string from outside fit for a terminal: control characters
// (escape sequences, newlines that would forge lines) and invalid UTF-8 are
// shown escaped, and an overlong string is cut.
func Safe(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) {
			clean = false
			break
		}
	}
	if clean && len(s) <= maxShown {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		if b.Len() >= maxShown {
			fmt.Fprintf(&b, "… (%d bytes more)", len(s)-i)
			break
		}
		switch {
		case r == utf8.RuneError:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsControl(r) && r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unicode.IsControl(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Dash shows an empty field of a table as "-".
func Dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
