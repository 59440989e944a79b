package binfmt

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Kernel and mabd limits on a handler.
const (
	// MaxLineLen is the longest register line the kernel accepts
	// (MAX_REGISTER_LENGTH), trailing newline included.
	MaxLineLen = 1920
	// MaxMagicEnd bounds offset+len(magic): they must stay under it. Linux
	// before 5.1 enforced 128 (BINPRM_BUF_SIZE); newer kernels allow 256,
	// but a handler beyond 128 bytes would not load on older ones.
	MaxMagicEnd = 128
	// MaxInterpreterLen is the longest interpreter path binfmt_misc keeps.
	MaxInterpreterLen = 127
	// minLineLen is the shortest line the kernel looks at.
	minLineLen = 11
)

// Type says how a handler recognises its files.
type Type byte

const (
	// Magic handlers match bytes at an offset in the file.
	Magic Type = 'M'
	// Extension handlers match the file name's extension.
	Extension Type = 'E'
)

// Flags are a handler's option letters.
type Flags uint8

// The flags, in the order the kernel prints them.
const (
	PreserveArgv0 Flags = 1 << iota // P
	OpenBinary                      // O
	Credentials                     // C (implies O)
	FixBinary                       // F
)

var flagLetters = []struct {
	flag   Flags
	letter byte
}{{PreserveArgv0, 'P'}, {OpenBinary, 'O'}, {Credentials, 'C'}, {FixBinary, 'F'}}

// ParseFlags reads flag letters in any order, as the kernel does. C implies
// O, so the result of "C" has both. An unknown letter is an error.
func ParseFlags(s string) (Flags, error) {
	var f Flags
	for i := 0; i < len(s); i++ {
		found := false
		for _, fl := range flagLetters {
			if s[i] == fl.letter {
				f |= fl.flag
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown flag %q in %q: the flags are P (preserve argv[0]), O (open binary), C (credentials) and F (fix binary)", s[i], s)
		}
	}
	return f.normalize(), nil
}

func (f Flags) normalize() Flags {
	if f&Credentials != 0 {
		f |= OpenBinary
	}
	return f
}

// String returns the letters in the kernel's order (POCF), "" for none.
func (f Flags) String() string {
	var b strings.Builder
	for _, fl := range flagLetters {
		if f&fl.flag != 0 {
			b.WriteByte(fl.letter)
		}
	}
	return b.String()
}

// Has reports whether every flag in g is set in f.
func (f Flags) Has(g Flags) bool { return f&g == g }

// Spec is one binfmt_misc handler: what Parse reads from a register line
// and Line writes back.
type Spec struct {
	Name string
	Type Type
	// Offset of Magic in the file; always 0 for Extension handlers.
	Offset int
	// Magic is the bytes to match (Magic handlers) or the extension
	// without its dot (Extension handlers).
	Magic []byte
	// Mask is ANDed with the file's bytes before comparing; nil means none.
	// Always nil for Extension handlers.
	Mask        []byte
	Interpreter string
	Flags       Flags
}

// LineError says which part of a register line is wrong and why.
type LineError struct {
	Field  string // name, type, offset, magic, mask, interpreter, flags or line
	Reason string
}

func (e *LineError) Error() string {
	return "invalid binfmt_misc handler: " + e.Field + ": " + e.Reason
}

func lineErr(field, format string, args ...any) error {
	return &LineError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Line returns the register line for s (without a trailing newline), with
// every magic and mask byte written as \xHH. It does not validate s.
func (s Spec) Line() string {
	var b strings.Builder
	b.Grow(s.lineLen())
	b.WriteByte(':')
	b.WriteString(s.Name)
	b.WriteByte(':')
	b.WriteByte(byte(s.Type))
	b.WriteByte(':')
	if s.Type == Magic && s.Offset != 0 {
		b.WriteString(strconv.Itoa(s.Offset))
	}
	b.WriteByte(':')
	if s.Type == Extension {
		b.Write(s.Magic)
	} else {
		writeEscaped(&b, s.Magic)
	}
	b.WriteByte(':')
	writeEscaped(&b, s.Mask)
	b.WriteByte(':')
	b.WriteString(s.Interpreter)
	b.WriteByte(':')
	b.WriteString(s.Flags.String())
	return b.String()
}

// lineLen is len(s.Line()), counted without writing the line (Validate
// checks it for every spec of an install or a status).
func (s Spec) lineLen() int {
	n := len(":") + len(s.Name) + len(":") + 1 + len(":")
	if s.Type == Magic && s.Offset != 0 {
		n += decimalLen(s.Offset)
	}
	n += len(":")
	if s.Type == Extension {
		n += len(s.Magic)
	} else {
		n += len(`\xHH`) * len(s.Magic)
	}
	n += len(":") + len(`\xHH`)*len(s.Mask) + len(":") + len(s.Interpreter) + len(":")
	for _, fl := range flagLetters {
		if s.Flags&fl.flag != 0 {
			n++
		}
	}
	return n
}

// decimalLen is len(strconv.Itoa(n)).
func decimalLen(n int) int {
	l := 1
	if n < 0 {
		l++
	}
	for n >= 10 || n <= -10 {
		n /= 10
		l++
	}
	return l
}

func writeEscaped(b *strings.Builder, p []byte) {
	const hex = "0123456789abcdef"
	for _, c := range p {
		b.WriteString(`\x`)
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
}

// String returns s.Line().
func (s Spec) String() string { return s.Line() }

// Validate checks s against the kernel's rules and mabd's (see the package
// documentation) and says which field is wrong and why.
func (s Spec) Validate() error {
	if err := ValidName(s.Name); err != nil {
		return err
	}
	switch s.Type {
	case Magic:
		if len(s.Magic) == 0 {
			return lineErr("magic", "empty: a magic handler needs the bytes to match")
		}
		if s.Offset < 0 {
			return lineErr("offset", "negative (%d)", s.Offset)
		}
		if s.Offset+len(s.Magic) >= MaxMagicEnd {
			return lineErr("magic", "offset %d + %d magic bytes must stay under %d", s.Offset, len(s.Magic), MaxMagicEnd)
		}
		if s.Mask != nil && len(s.Mask) != len(s.Magic) {
			return lineErr("mask", "%d bytes but the magic has %d: they must be the same length", len(s.Mask), len(s.Magic))
		}
	case Extension:
		if len(s.Magic) == 0 {
			return lineErr("magic", "empty: an extension handler needs the extension")
		}
		if i := bytes.IndexAny(s.Magic, "/:\n\x00"); i >= 0 {
			return lineErr("magic", "extension %q contains %q", s.Magic, s.Magic[i])
		}
		if s.Offset != 0 || s.Mask != nil {
			return lineErr("offset", "extension handlers take no offset or mask")
		}
	default:
		return lineErr("type", "%q is not M (magic) or E (extension)", byte(s.Type))
	}
	if err := validInterpreter(s.Interpreter); err != nil {
		return err
	}
	if s.Flags&^(PreserveArgv0|OpenBinary|Credentials|FixBinary) != 0 {
		return lineErr("flags", "unknown flag bits %#x", uint8(s.Flags))
	}
	if n := s.lineLen() + 1; n > MaxLineLen {
		return lineErr("line", "%d bytes with its newline; the kernel takes at most %d", n, MaxLineLen)
	}
	return nil
}

// ValidName checks a handler name: not empty, not "." or "..", not one of
// the mount's own files, and free of '/', ':', newlines and NUL.
func ValidName(name string) error {
	switch name {
	case "":
		return lineErr("name", "empty")
	case ".", "..", "register", "status":
		return lineErr("name", "%q is reserved", name)
	}
	if i := strings.IndexAny(name, "/:\n\x00"); i >= 0 {
		return lineErr("name", "%q contains %q; use letters, digits, '-', '_' or '.'", name, name[i])
	}
	if len(name) > 255 {
		return lineErr("name", "%d bytes; a file name has at most 255", len(name))
	}
	return nil
}

func validInterpreter(p string) error {
	switch {
	case p == "":
		return lineErr("interpreter", "empty")
	case !strings.HasPrefix(p, "/"):
		return lineErr("interpreter", "%q is relative: give an absolute path", p)
	case len(p) > MaxInterpreterLen:
		return lineErr("interpreter", "%d bytes; binfmt_misc keeps at most %d", len(p), MaxInterpreterLen)
	}
	if i := strings.IndexAny(p, ":\n\x00"); i >= 0 {
		return lineErr("interpreter", "%q contains %q", p, p[i])
	}
	return nil
}

// Parse reads a register line the way the kernel does: the first character
// is the delimiter, all seven fields must be there (flags may be empty), one
// trailing newline is allowed, magic and mask take \xHH escapes. The result
// is validated.
func Parse(line string) (Spec, error) {
	if len(line) > MaxLineLen {
		return Spec{}, lineErr("line", "%d bytes; the kernel takes at most %d", len(line), MaxLineLen)
	}
	if len(line) < minLineLen {
		return Spec{}, lineErr("line", "%q is too short; the form is :name:type:offset:magic:mask:interpreter:flags", line)
	}
	if strings.IndexByte(line, 0) >= 0 {
		return Spec{}, lineErr("line", "contains a NUL byte")
	}
	body := strings.TrimSuffix(line, "\n")
	del := body[0]
	if del == '\n' || del == '\\' {
		return Spec{}, lineErr("line", "%q cannot be the delimiter", del)
	}
	f := strings.Split(body[1:], string(del))
	if len(f) > 7 {
		return Spec{}, lineErr("flags", "unexpected %q after the flags", strings.Join(f[7:], string(del)))
	}
	if len(f) < 7 {
		return Spec{}, lineErr("line", "%q has %d fields, the kernel needs 7 (the delimiter before the flags too): :name:type:offset:magic:mask:interpreter:flags", line, len(f))
	}
	for i, name := range []string{"name", "type", "offset", "magic", "mask", "interpreter", "flags"} {
		if strings.IndexByte(f[i], '\n') >= 0 {
			return Spec{}, lineErr(name, "contains a newline")
		}
		if del != ':' && strings.IndexByte(f[i], ':') >= 0 && (i == 0 || i == 5) {
			return Spec{}, lineErr(name, "contains ':'")
		}
	}
	s := Spec{Name: f[0], Interpreter: f[5]}
	if len(f[1]) != 1 {
		return Spec{}, lineErr("type", "%q is not M (magic) or E (extension)", f[1])
	}
	s.Type = Type(f[1][0])
	var err error
	switch s.Type {
	case Magic:
		if s.Offset, err = parseOffset(f[2]); err != nil {
			return Spec{}, err
		}
		if s.Magic, err = unescape("magic", f[3]); err != nil {
			return Spec{}, err
		}
		if f[4] != "" {
			if s.Mask, err = unescape("mask", f[4]); err != nil {
				return Spec{}, err
			}
		}
	case Extension:
		// The kernel skips the offset and mask fields of extension handlers.
		s.Magic = []byte(f[3])
	}
	if s.Flags, err = ParseFlags(f[6]); err != nil {
		return Spec{}, &LineError{Field: "flags", Reason: err.Error()}
	}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

func parseOffset(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, lineErr("offset", "%q is not a decimal number", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n >= MaxMagicEnd {
		return 0, lineErr("offset", "%s must stay under %d", s, MaxMagicEnd)
	}
	return n, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// unescape decodes a magic or mask field as the kernel does: first every
// "\x" must be followed by two hex digits (scanarg), then "\xH" or "\xHH"
// becomes a byte and any other backslash is kept together with the
// character after it (string_unescape with UNESCAPE_HEX).
func unescape(field, s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && s[i+1] == 'x' {
			if i+3 >= len(s) || !isHex(s[i+2]) || !isHex(s[i+3]) {
				return nil, lineErr(field, `%q: \x must be followed by two hex digits`, s)
			}
			i += 3
		}
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			out = append(out, c)
			i++
			continue
		}
		if s[i+1] == 'x' && i+2 < len(s) && isHex(s[i+2]) {
			n := unhex(s[i+2])
			i += 3
			if i < len(s) && isHex(s[i]) {
				n = n<<4 | unhex(s[i])
				i++
			}
			out = append(out, n)
			continue
		}
		out = append(out, '\\', s[i+1])
		i += 2
	}
	if len(out) == 0 && field == "magic" {
		return nil, lineErr(field, "empty: a magic handler needs the bytes to match")
	}
	return out, nil
}

// Equal reports whether a and b describe the same handler, byte for byte.
// A nil mask equals an empty one.
func (s Spec) Equal(o Spec) bool {
	return s.Name == o.Name && s.Type == o.Type && s.Offset == o.Offset &&
		bytes.Equal(s.Magic, o.Magic) && bytes.Equal(s.Mask, o.Mask) &&
		s.Interpreter == o.Interpreter && s.Flags.normalize() == o.Flags.normalize()
}

// SameFiles reports whether s and o select the same files: the same type,
// offset, mask and masked magic (or the same extension), whatever their
// names, interpreters and flags. The kernel uses the newer of two such
// handlers, so one shadows the other.
func (s Spec) SameFiles(o Spec) bool {
	if s.Type != o.Type || s.Offset != o.Offset || len(s.Magic) != len(o.Magic) {
		return false
	}
	if s.Type == Extension {
		return bytes.Equal(s.Magic, o.Magic)
	}
	for i := range s.Magic {
		if maskAt(s.Mask, i) != maskAt(o.Mask, i) || s.Magic[i]&maskAt(s.Mask, i) != o.Magic[i]&maskAt(o.Mask, i) {
			return false
		}
	}
	return true
}

func maskAt(m []byte, i int) byte {
	if m == nil {
		return 0xff
	}
	return m[i]
}

// Matches reports whether the first bytes of a file (its header) select s.
// Only Magic handlers match by content.
func (s Spec) Matches(header []byte) bool {
	if s.Type != Magic || len(header) < s.Offset+len(s.Magic) {
		return false
	}
	for i, m := range s.Magic {
		if header[s.Offset+i]&maskAt(s.Mask, i) != m&maskAt(s.Mask, i) {
			return false
		}
	}
	return true
}

// Narrowing says where an entry fails to select every file another
// selects: at byte Offset of the file it checks the bits Extra, which the
// other leaves free, or wants other values in bits the two both check
// (Differs). See [Spec.Covers].
type Narrowing struct {
	// Offset is the byte of the file, counted from its start.
	Offset int
	// Mask is the entry's mask at that byte; Want its masked magic.
	Mask, Want byte
	// Extra are bits the entry checks and the other does not: files that
	// differ there are refused by the entry although the other takes
	// them.
	Extra byte
	// Differs: the two check a bit in common and want other values.
	Differs bool
}

// Covers reports whether s selects every file that t selects: every bit
// s checks is one that t checks too, with the same value. An entry that
// covers an architecture's table spec runs all of that architecture's
// programs; one that does not refuses some valid programs (Debian's mips
// entries check byte 8, EI_ABIVERSION, with the mask 0xfe, so programs of
// ABI version 2 and above fall through). When it does not, the first byte
// at fault is returned. Both must be magic handlers.
func (s Spec) Covers(t Spec) (bool, *Narrowing) {
	if s.Type != Magic || t.Type != Magic {
		return false, nil
	}
	tBits := func(p int) (mask, val byte) {
		i := p - t.Offset
		if i < 0 || i >= len(t.Magic) {
			return 0, 0
		}
		m := maskAt(t.Mask, i)
		return m, t.Magic[i] & m
	}
	for i := range s.Magic {
		p := s.Offset + i
		sm := maskAt(s.Mask, i)
		sv := s.Magic[i] & sm
		tm, tv := tBits(p)
		if extra := sm &^ tm; extra != 0 {
			return false, &Narrowing{Offset: p, Mask: sm, Want: sv, Extra: extra}
		}
		if sv != tv&sm {
			return false, &Narrowing{Offset: p, Mask: sm, Want: sv, Differs: true}
		}
	}
	return true, nil
}
