// Package tomlcheck decodes a TOML document into a Go struct strictly and
// reports what is wrong with it as a person editing the file needs it:
// each error names the file, the line and the key, says what the value
// must be, and suggests the key meant when one is unknown.
//
// The decoding and most of the strictness are go-toml's
// (github.com/pelletier/go-toml/v2 with Decoder.DisallowUnknownFields):
// syntax errors, keys and tables defined twice, unknown keys and values
// it cannot store are its DecodeError and StrictMissingError, with their
// positions. A Schema adds a check of the document itself, made with
// go-toml's own parser (unstable.Parser) before decoding, for what
// go-toml's strict mode does not do (go-toml v2.4.3):
//
//   - Keys that differ only in case. The decoder matches keys to fields
//     without regard to case, so Persist = true sets the field tagged
//     "persist"; here it is an unknown key.
//   - Values of the wrong type. The decoder converts what it can: an
//     integer or a boolean given to a type with UnmarshalText is passed
//     as its text (architectures = 3 becomes ["3"]), and an integer given
//     to a uint32 is stored as it is (mode = 660 is not 0o660). When
//     UnmarshalText refuses such a value, the error has no position
//     (reconcile_interval = 2 gives just "2" is not a duration). Here
//     the value's TOML type is compared with the field's Go type (and a
//     Leaf's own rules) and the error says what the value must be, in
//     words, rather than naming Go types ("cannot decode TOML integer
//     into struct field daemon.Config.Persist of type bool").
//   - All errors in the order of the file. The decoder stops at its first
//     error, and reports unknown keys only when everything else decoded,
//     so an unknown key on line 1 hides behind a bad value on line 9.
//     Here the error that comes first in the file is reported, or, when
//     that is an unknown key, every unknown key.
//   - Whole key paths. Inside an inline table the decoder names an
//     unknown key relative to that table (timeout for verify = { timeout
//     = … }); here keys are always dotted from the root.
//   - Suggestions. An unknown key gets the nearest known one ("did you
//     mean"), bounded in cost (no suggestion for keys over 64 bytes, and
//     long keys are shortened in messages), and a top-level key written
//     after a [table] is told that top-level keys go before the first
//     table.
//
// The schema is the struct type's toml tags: every field with a toml tag
// is a key, and no other field is (go-toml would take a field's name); a
// struct or a map with string keys is a table, the other fields are
// values: bool, string, integers, floats, slices of those, and the Leaf
// types the caller declares (a Duration that is a struct in Go but a
// string in TOML, say).
package tomlcheck

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// A Leaf is a type of the schema that holds one value although Go may see
// a struct, a map, a slice or a number (a duration, a file mode), with
// its own rules for the TOML value.
type Leaf struct {
	Type reflect.Type
	// What says what a value must be, for messages: `a duration string
	// like "2s"`.
	What string
	// Check says what is wrong with a value as the document writes it:
	// nil when it fits, v.WrongKind() when it is of a kind the type does
	// not take (the message then says the value must be What), or an error
	// whose text is the message.
	Check func(v Value) error
}

// Options are a schema's types and words.
type Options struct {
	// Leaves are the schema's leaf types.
	Leaves []Leaf
	// What overrides, per dotted key ("verify.rootfs"), what the messages
	// say its value must be.
	What map[string]string
}

// A Schema checks and decodes documents into a T, a struct type.
type Schema[T any] struct {
	root   reflect.Type
	leaves map[reflect.Type]Leaf
	what   map[string]string
}

// New returns the schema of T. It panics when T is no struct or holds a
// type the checker does not know (a programming error).
func New[T any](o Options) *Schema[T] {
	s := &Schema[T]{root: reflect.TypeFor[T](), leaves: map[reflect.Type]Leaf{}, what: o.What}
	for _, l := range o.Leaves {
		s.leaves[l.Type] = l
	}
	if s.root.Kind() != reflect.Struct {
		panic(fmt.Sprintf("tomlcheck: %s is no struct", s.root))
	}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		if _, ok := s.leaves[t]; ok {
			return
		}
		switch t.Kind() {
		case reflect.Struct:
			for _, name := range tomlFields(t) {
				f, _ := fieldOf(t, name)
				walk(f.Type)
			}
		case reflect.Map:
			if t.Key().Kind() != reflect.String {
				panic(fmt.Sprintf("tomlcheck: %s: a table's keys are strings", t))
			}
			walk(t.Elem())
		case reflect.Slice:
			if scalarKind(t.Elem()) == "" {
				panic(fmt.Sprintf("tomlcheck: %s: lists of %s are not supported (declare it a Leaf)", t, t.Elem()))
			}
		default:
			if scalarKind(t) == "" {
				panic(fmt.Sprintf("tomlcheck: %s is not supported (declare it a Leaf)", t))
			}
		}
	}
	walk(s.root)
	return s
}

// Decode decodes data, the content of file, into v (fields the document
// leaves out keep their values) with go-toml's strict decoder, and checks
// the document first. It returns the line of every key and table of the
// document, dotted ("verify.interval"; the first when there are several),
// for errors found later in the values, and what is wrong: nothing, the
// error that comes first in the file, or, when that is an unknown key,
// every unknown key. The errors have file, line (0 when unknown) and key
// ("" for a syntax error). A document with errors may have been decoded
// in part.
func (s *Schema[T]) Decode(file string, data []byte, v *T) (lines map[string]int, errs []*Error) {
	keys := indexKeys(data)
	lines = map[string]int{}
	for _, k := range keys {
		if _, ok := lines[k.dotted()]; !ok {
			lines[k.dotted()] = k.line
		}
	}
	pre := s.checkKeys(keys)
	derr := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(v)
	errs = firstErrors(append(pre, s.decodeErrors(derr, pre)...))
	for _, e := range errs {
		e.File = file
	}
	return lines, errs
}

// Keys lists every key and table of the schema, dotted, in the order of
// the fields.
func (s *Schema[T]) Keys() []string {
	var out []string
	for _, p := range s.knownPaths() {
		out = append(out, strings.Join(p, "."))
	}
	return out
}

// Error is what is wrong with a document: the file and line (0 when
// unknown) of the key, the key (dotted for tables: "verify.interval"; ""
// when there is none, as for a syntax error) and what is wrong.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string

	// unknown: the key is unknown and Msg names it already, so Error does
	// not prefix it.
	unknown bool
}

// Error formats the error as FILE:LINE: key "KEY": MSG, leaving out what
// is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		fmt.Fprintf(&b, "%s: ", e.File)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" && !e.unknown {
		fmt.Fprintf(&b, "key %q: ", e.Key)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Join returns nil for no error, the error for one, and errors.Join of
// them for several (errors.As finds the first).
func Join(errs []*Error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	es := make([]error, len(errs))
	for i, e := range errs {
		es[i] = e
	}
	return errors.Join(es...)
}

// firstErrors picks what to report: the error that comes first in the
// file (one of unknown line last) or, when that is an unknown key, all
// the unknown keys.
func firstErrors(errs []*Error) []*Error {
	if len(errs) == 0 {
		return nil
	}
	after := func(a, b *Error) bool { // a comes after b
		return b.Line > 0 && (a.Line == 0 || a.Line > b.Line)
	}
	first := errs[0]
	for _, e := range errs[1:] {
		if after(first, e) {
			first = e
		}
	}
	if !first.unknown {
		return []*Error{first}
	}
	var unknown []*Error
	seen := map[string]bool{}
	for _, e := range errs {
		if e.unknown && !seen[e.Key] {
			seen[e.Key] = true
			unknown = append(unknown, e)
		}
	}
	slices.SortStableFunc(unknown, func(a, b *Error) int {
		switch {
		case after(a, b):
			return 1
		case after(b, a):
			return -1
		}
		return 0
	})
	return unknown
}

// decodeErrors turns what go-toml's decoder returned into Errors. Most
// of them the check of the document (pre) has found already (firstErrors
// keeps the first); syntax errors and keys or tables defined twice are
// only go-toml's.
func (s *Schema[T]) decodeErrors(err error, pre []*Error) []*Error {
	if err == nil {
		return nil
	}
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		// The check finds every unknown key go-toml finds, but names some
		// otherwise: go-toml gives the whole path where the check names
		// its first unknown part (primry.max_conns, primry), and a path
		// relative to an inline table inside one (also inside an inline
		// table given where a value belongs, which the check reports as a
		// value of the wrong type). So an unknown key of go-toml's on a
		// line where the check found something wrong is that.
		checked := map[int]bool{}
		for _, e := range pre {
			checked[e.Line] = true
		}
		var out []*Error
		for i := range strict.Errors {
			e := &strict.Errors[i]
			if line, _ := e.Position(); !checked[line] {
				out = append(out, s.unknownKey(e.Key(), line, strings.Contains(e.Error(), "table")))
			}
		}
		return out
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		key := []string(de.Key())
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		e := &Error{Line: line, Key: strings.Join(key, "."), Msg: msg}
		switch {
		case strings.Contains(msg, "already"):
			e.Msg = "defined more than once (each key and table may appear once)"
		case len(key) == 0:
			e.Msg = "invalid TOML: " + msg
		case strings.HasPrefix(msg, "cannot "):
			if t, ok := s.schemaAt(key); ok {
				e.Msg = "must be " + s.describe(key, t)
			}
		}
		return []*Error{e}
	}
	return []*Error{{Msg: err.Error()}}
}
