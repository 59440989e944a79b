package tomlcheck

import (
	"bytes"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// Kind is the TOML type of a value as the document writes it.
type Kind int

// The kinds of values. Table is a table however written: [header],
// inline, or implied by a dotted key or a header below it.
const (
	String Kind = iota + 1
	Integer
	Float
	Bool
	DateTime // any date or time
	Array
	Table
	ArrayTable // [[header]]
)

// String names the kind for messages: "a string", "an integer".
func (k Kind) String() string {
	switch k {
	case String:
		return "a string"
	case Integer:
		return "an integer"
	case Float:
		return "a float"
	case Bool:
		return "a boolean"
	case Array:
		return "a list"
	case Table:
		return "a table"
	case ArrayTable:
		return "an array of tables"
	default:
		return "a date or time"
	}
}

// Value is a value as the document writes it, before decoding.
type Value struct {
	Kind Kind
	// Text is a string's value, or an integer as written ("0o640").
	Text string
	// Elems are the kinds of an array's elements.
	Elems []Kind
}

// kindError says that a value is of a kind its type does not take; the
// message is "must be WHAT, " and its text.
type kindError struct{ not string }

func (e *kindError) Error() string { return "not " + e.not }

// WrongKind is the error for a value whose kind its type does not take:
// the message says what the value must be and what it is.
func (v Value) WrongKind() error { return &kindError{v.Kind.String()} }

// Of returns nil when v is of one of the kinds, else WrongKind.
func (v Value) Of(kinds ...Kind) error {
	if slices.Contains(kinds, v.Kind) {
		return nil
	}
	return v.WrongKind()
}

// ListOf returns nil when v is an array whose elements are all of the
// kinds, else an error like WrongKind's ("not a list holding an integer").
func (v Value) ListOf(kinds ...Kind) error {
	if v.Kind != Array {
		return v.WrongKind()
	}
	for _, e := range v.Elems {
		if !slices.Contains(kinds, e) {
			return &kindError{"a list holding " + e.String()}
		}
	}
	return nil
}

// keyPos is a key of the document: where it is and what its value is.
type keyPos struct {
	path  []string
	line  int
	value Value
}

func (k keyPos) dotted() string { return strings.Join(k.path, ".") }

// kindOf maps go-toml's parser's kinds to Kinds.
func kindOf(k unstable.Kind) Kind {
	switch k {
	case unstable.String:
		return String
	case unstable.Integer:
		return Integer
	case unstable.Float:
		return Float
	case unstable.Bool:
		return Bool
	case unstable.Array:
		return Array
	case unstable.Table, unstable.InlineTable:
		return Table
	case unstable.ArrayTable:
		return ArrayTable
	default:
		return DateTime
	}
}

// indexKeys lists the document's keys and tables, in order, with their
// lines: tables (also those that dotted keys and table headers imply)
// and the key-values of tables and inline tables. It stops at a syntax
// error, which the decoder reports.
func indexKeys(data []byte) []keyPos {
	var p unstable.Parser
	p.Reset(data)
	lineOf := func(n *unstable.Node) int {
		off := int(n.Raw.Offset)
		if off > len(data) {
			off = len(data)
		}
		return 1 + bytes.Count(data[:off], []byte("\n"))
	}
	var out []keyPos
	implied := func(path []string, line int) {
		out = append(out, keyPos{path: slices.Clone(path), line: line, value: Value{Kind: Table}})
	}
	// key appends the parts of n's key to prefix, with the implied tables.
	key := func(prefix []string, n *unstable.Node) ([]string, int) {
		path := slices.Clone(prefix)
		line := 0
		it := n.Key()
		for it.Next() {
			if line > 0 {
				implied(path, line)
			}
			path = append(path, string(it.Node().Data))
			line = lineOf(it.Node())
		}
		return path, line
	}
	var keyValue func(prefix []string, n *unstable.Node)
	keyValue = func(prefix []string, n *unstable.Node) {
		path, line := key(prefix, n)
		v := n.Value()
		k := keyPos{path: path, line: line, value: Value{Kind: kindOf(v.Kind)}}
		switch v.Kind {
		case unstable.String, unstable.Integer:
			k.value.Text = string(v.Data)
		case unstable.Array:
			for it := v.Children(); it.Next(); {
				k.value.Elems = append(k.value.Elems, kindOf(it.Node().Kind))
			}
		}
		out = append(out, k)
		if v.Kind == unstable.InlineTable {
			for it := v.Children(); it.Next(); {
				if it.Node().Kind == unstable.KeyValue {
					keyValue(path, it.Node())
				}
			}
		}
	}
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			path, line := key(nil, e)
			out = append(out, keyPos{path: path, line: line, value: Value{Kind: kindOf(e.Kind)}})
			table = path
		case unstable.KeyValue:
			keyValue(table, e)
		}
	}
	return out
}
