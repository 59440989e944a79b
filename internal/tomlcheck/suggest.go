package tomlcheck

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// maxKeyForSuggestion: an unknown key longer than this gets no "did you
// mean" (no key of a schema is near it, and the edit distance grows with
// the square of the length), and is shortened to it in messages.
const maxKeyForSuggestion = 64

// unknownKey says that key is no key (or, with table, no table) of the
// schema, suggesting the nearest one.
func (s *Schema[T]) unknownKey(key []string, line int, table bool) *Error {
	name := strings.Join(key, ".")
	shown := name
	if len(shown) > maxKeyForSuggestion {
		shown = fmt.Sprintf("%s… (%d bytes)", strings.ToValidUTF8(shown[:maxKeyForSuggestion], ""), len(name))
	}
	msg := fmt.Sprintf("unknown key %q", shown)
	if table {
		msg = fmt.Sprintf("unknown table [%s]", shown)
	}
	if sg := s.suggest(key); sg != "" {
		msg += " (" + sg + ")"
	}
	return &Error{Line: line, Key: name, Msg: msg, unknown: true}
}

// suggest names the known key nearest to key: a typo of a key of the
// same table, or the same name in another table (a top-level key written
// after a [table] belongs to that table).
func (s *Schema[T]) suggest(key []string) string {
	if len(key) == 0 {
		return ""
	}
	if len(key[len(key)-1]) > maxKeyForSuggestion {
		return ""
	}
	parent, name := key[:len(key)-1], normalizeKey(key[len(key)-1])
	pt, ok := s.schemaAt(parent)
	if !ok || pt.Kind() != reflect.Struct || s.leafType(pt) {
		return ""
	}
	best, bestD := "", -1
	for _, f := range tomlFields(pt) {
		d := editDistance(name, f)
		if d <= maxTypo(name) && (bestD < 0 || d < bestD) {
			best, bestD = f, d
		}
	}
	if best != "" {
		return "did you mean " + s.showPath(append(slices.Clone(parent), best)) + "?"
	}
	var elsewhere []string
	for _, p := range s.knownPaths() {
		if p[len(p)-1] == name && !slices.Equal(p[:len(p)-1], parent) {
			elsewhere = append(elsewhere, s.showPath(p))
		}
	}
	switch {
	case len(elsewhere) == 1 && len(parent) > 0 && !strings.Contains(elsewhere[0], "."):
		return "did you mean " + elsewhere[0] + "? top-level keys go before the first [table]"
	case len(elsewhere) > 0:
		return "did you mean " + strings.Join(elsewhere, " or ") + "?"
	}
	return ""
}

// showPath writes a known key as "verify.interval" and a table as
// [verify].
func (s *Schema[T]) showPath(p []string) string {
	if t, _ := s.schemaAt(p); t != nil && !s.leafType(t) {
		return "[" + strings.Join(p, ".") + "]"
	}
	return strconv.Quote(strings.Join(p, "."))
}

// normalizeKey folds the usual slips of a key's spelling: case and
// dashes for underscores.
func normalizeKey(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), "-", "_")
}

// maxTypo is how many edits make a typo of a name of n letters.
func maxTypo(name string) int {
	switch n := len(name); {
	case n <= 3:
		return 0
	case n <= 5:
		return 1
	default:
		return 2
	}
}

// editDistance is the optimal string alignment distance between a and
// b, in bytes: the edits are inserting, deleting or replacing a letter,
// and swapping two adjacent ones.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
