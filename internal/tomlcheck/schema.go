package tomlcheck

import (
	"reflect"
	"strings"
)

// The schema is the root type, read through the toml tags.

// leafType reports whether t is a value rather than a table.
func (s *Schema[T]) leafType(t reflect.Type) bool {
	if _, ok := s.leaves[t]; ok {
		return true
	}
	return t.Kind() != reflect.Struct && t.Kind() != reflect.Map
}

// tomlFields lists the keys of a struct type.
func tomlFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		if name := tagName(t.Field(i)); name != "" {
			out = append(out, name)
		}
	}
	return out
}

// tagName is the key of a struct field, "" when it is none.
func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// fieldOf finds the field of struct type t whose key is name, which must
// match exactly (go-toml would take one that differs in case).
func fieldOf(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); tagName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// schemaAt returns the type of the value at path (the root for none);
// false when the schema has no such key. Any name is a key of a map.
func (s *Schema[T]) schemaAt(path []string) (reflect.Type, bool) {
	t := s.root
	for _, part := range path {
		switch {
		case s.leafType(t):
			return nil, false
		case t.Kind() == reflect.Map:
			t = t.Elem()
		default:
			f, ok := fieldOf(t, part)
			if !ok {
				return nil, false
			}
			t = f.Type
		}
	}
	return t, true
}

// knownPaths lists every key and table of the schema; not the keys of
// maps, which are the document's.
func (s *Schema[T]) knownPaths() [][]string {
	var out [][]string
	var walk func(prefix []string, t reflect.Type)
	walk = func(prefix []string, t reflect.Type) {
		for _, name := range tomlFields(t) {
			p := append(append([]string(nil), prefix...), name)
			out = append(out, p)
			if ft, _ := s.schemaAt(p); ft.Kind() == reflect.Struct && !s.leafType(ft) {
				walk(p, ft)
			}
		}
	}
	walk(nil, s.root)
	return out
}

// scalarKind names what a value of a non-table, non-leaf type t must be in
// TOML, as a plural for lists ("strings"); "" when the checker does not
// know t.
func scalarKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "booleans"
	case reflect.String:
		return "strings"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integers"
	case reflect.Float32, reflect.Float64:
		return "numbers"
	}
	return ""
}

// describe says what a value of type t at path must be.
func (s *Schema[T]) describe(path []string, t reflect.Type) string {
	if w, ok := s.what[strings.Join(path, ".")]; ok {
		return w
	}
	if l, ok := s.leaves[t]; ok {
		return l.What
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "a table ([" + strings.Join(path, ".") + "])"
	case reflect.Slice:
		return "a list of " + scalarKind(t.Elem())
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Float32, reflect.Float64:
		return "a number"
	default:
		return "an integer"
	}
}

// kinds are the TOML kinds a value of the scalar type t may have.
func kinds(t reflect.Type) []Kind {
	switch t.Kind() {
	case reflect.Bool:
		return []Kind{Bool}
	case reflect.String:
		return []Kind{String}
	case reflect.Float32, reflect.Float64:
		return []Kind{Float, Integer}
	default:
		return []Kind{Integer}
	}
}

// checkKeys reports, in the order of the document, the keys the schema
// does not have (the first unknown part of a path only) and those whose
// value does not fit their type.
func (s *Schema[T]) checkKeys(keys []keyPos) []*Error {
	var errs []*Error
	for _, k := range keys {
		if len(k.path) == 0 {
			continue
		}
		t, ok := s.schemaAt(k.path)
		if !ok {
			parent, known := s.schemaAt(k.path[:len(k.path)-1])
			if known && !s.leafType(parent) && parent.Kind() == reflect.Struct {
				table := k.value.Kind == Table || k.value.Kind == ArrayTable
				errs = append(errs, s.unknownKey(k.path, k.line, table))
			}
			continue
		}
		if err := s.checkType(k.value, t); err != nil {
			msg := err.Error()
			if ke, ok := err.(*kindError); ok {
				msg = "must be " + s.describe(k.path, t) + ", " + ke.Error()
			}
			errs = append(errs, &Error{Line: k.line, Key: k.dotted(), Msg: msg})
		}
	}
	return errs
}

// checkType says what is wrong with v for type t, nil if nothing.
func (s *Schema[T]) checkType(v Value, t reflect.Type) error {
	if l, ok := s.leaves[t]; ok {
		return l.Check(v)
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		if v.Kind != Table {
			return v.WrongKind()
		}
	case reflect.Slice:
		return v.ListOf(kinds(t.Elem())...)
	default:
		return v.Of(kinds(t)...)
	}
	return nil
}
