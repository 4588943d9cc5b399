package infertrail

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// This file implements RFC 8785, the JSON Canonicalization Scheme (JCS):
// objects with members sorted by the UTF-16 code units of their names, no
// insignificant white space, strings with only the mandatory escapes, and
// numbers serialised as ECMAScript's Number.prototype.toString does. Input
// must also be I-JSON (RFC 7493): valid UTF-8 without lone surrogates, no
// duplicate member names, and numbers that a double holds (an integer
// literal beyond ±(2^53-1) is refused rather than silently rounded).

// MaxDepth is the deepest nesting of arrays and objects accepted.
const MaxDepth = 128

// Canonicalize returns the RFC 8785 canonical form of the JSON value in src.
func Canonicalize(src []byte) ([]byte, error) {
	return AppendCanonical(nil, src)
}

// AppendCanonical appends the canonical form of the one JSON value in src
// (white space around it is allowed) to dst.
func AppendCanonical(dst, src []byte) ([]byte, error) {
	p := getParser(src)
	defer putParser(p)
	out, err := p.one(dst)
	if err != nil {
		return dst, err
	}
	return out, nil
}

// one appends the canonical form of the one JSON value in p's buffer,
// white space around it allowed, to dst.
func (p *parser) one(dst []byte) ([]byte, error) {
	p.skipSpace()
	out, err := p.value(dst)
	if err != nil {
		return out, err
	}
	p.skipSpace()
	if p.pos != len(p.buf) {
		return out, p.errorf("unexpected %s after the value", p.describe())
	}
	return out, nil
}

// canonicalValue returns src itself when it is one JSON value in canonical
// form, without white space around it, and a new canonical copy otherwise:
// values built in Go are canonical already, and need no copy.
func canonicalValue(src []byte) ([]byte, error) {
	p := getParser(src)
	defer putParser(p)
	out, err := p.one(p.canon[:0])
	p.canon = out[:0]
	if err != nil {
		return nil, err
	}
	if string(out) == string(src) {
		return src, nil
	}
	return bytes.Clone(out), nil
}

// SyntaxError is malformed or non-I-JSON input, at a byte offset.
type SyntaxError struct {
	Offset int
	Path   string // where in the value, such as attributes.cost[2]; empty at the top
	Msg    string
}

func (e *SyntaxError) Error() string {
	if e.Path != "" {
		return fmt.Sprintf("%s: %s (at byte %d)", e.Path, e.Msg, e.Offset)
	}
	return fmt.Sprintf("%s (at byte %d)", e.Msg, e.Offset)
}

// Unwrap makes every SyntaxError an ErrInvalid.
func (e *SyntaxError) Unwrap() error { return ErrInvalid }

// inPath prefixes the path of a SyntaxError with an object member name or
// an array index as the error unwinds.
func inPath(err error, key string, index int) error {
	se, ok := err.(*SyntaxError)
	if !ok {
		return err
	}
	var elem string
	switch {
	case index >= 0:
		elem = fmt.Sprintf("[%d]", index)
	case isIdent(key):
		elem = key
	default:
		elem = "[" + strconv.Quote(key) + "]"
	}
	if se.Path != "" && se.Path[0] != '[' {
		se.Path = "." + se.Path
	}
	se.Path = elem + se.Path
	return se
}

// isIdent reports whether a member name can stand in a path after a dot.
func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

type parser struct {
	buf   []byte
	pos   int
	depth int
	// members is a stack shared by nested objects; tmp is scratch space for
	// re-sorting an object's members. Both are reused across values.
	members []member
	tmp     []byte
	canon   []byte // isCanonical's output
	// arena, when set, is where record writes the canonical forms of a
	// batch's records, one after the other: one allocation for the batch.
	arena []byte
}

var parserPool = sync.Pool{New: func() any { return new(parser) }}

// getParser returns a pooled parser over buf.
func getParser(buf []byte) *parser {
	p := parserPool.Get().(*parser)
	p.buf, p.pos, p.depth = buf, 0, 0
	return p
}

func putParser(p *parser) {
	p.buf, p.arena = nil, nil
	p.members = p.members[:0]
	if cap(p.tmp) > 1<<20 {
		p.tmp = nil
	}
	if cap(p.canon) > 1<<20 {
		p.canon = nil
	}
	parserPool.Put(p)
}

func (p *parser) errorf(format string, args ...any) error {
	return &SyntaxError{Offset: p.pos, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) describe() string {
	if p.pos >= len(p.buf) {
		return "end of input"
	}
	c := p.buf[p.pos]
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

func (p *parser) skipSpace() {
	for p.pos < len(p.buf) {
		switch p.buf[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value(dst []byte) ([]byte, error) {
	if p.pos >= len(p.buf) {
		return dst, p.errorf("unexpected end of input, want a value")
	}
	switch c := p.buf[p.pos]; {
	case c == '{':
		return p.object(dst)
	case c == '[':
		return p.array(dst)
	case c == '"':
		dst, _, err := p.appendStr(dst)
		return dst, err
	case c == 't':
		return p.literal(dst, "true")
	case c == 'f':
		return p.literal(dst, "false")
	case c == 'n':
		return p.literal(dst, "null")
	case c == '-' || c >= '0' && c <= '9':
		return p.number(dst)
	default:
		return dst, p.errorf("unexpected %s, want a value", p.describe())
	}
}

func (p *parser) literal(dst []byte, lit string) ([]byte, error) {
	if !bytes.HasPrefix(p.buf[p.pos:], []byte(lit)) {
		return dst, p.errorf("unexpected %s, want a value", p.describe())
	}
	p.pos += len(lit)
	return append(dst, lit...), nil
}

// member is one object member as written to the output: its canonical
// name at [start, keyEnd) (quotes included) and its value up to end.
type member struct {
	start, keyEnd, end int
	escaped            bool // the canonical name contains an escape
}

// compareMemberKeys orders two members of out by name, as RFC 8785 says.
func compareMemberKeys(out []byte, a, b member) int {
	ka, kb := out[a.start+1:a.keyEnd-1], out[b.start+1:b.keyEnd-1]
	if !a.escaped && !b.escaped {
		return CompareKeys(unsafeString(ka), unsafeString(kb))
	}
	return CompareKeys(decodeString(out[a.start:a.keyEnd]), decodeString(out[b.start:b.keyEnd]))
}

// object parses an object at p.pos and appends its canonical form. Members
// are written straight to dst in input order; only an object whose names
// are not already in order is rewritten, once, in sorted order.
func (p *parser) object(dst []byte) ([]byte, error) {
	p.depth++
	if p.depth > MaxDepth {
		return dst, p.errorf("nesting deeper than %d", MaxDepth)
	}
	defer func() { p.depth-- }()
	p.pos++ // '{'
	p.skipSpace()
	if p.pos < len(p.buf) && p.buf[p.pos] == '}' {
		p.pos++
		return append(dst, '{', '}'), nil
	}
	base := len(p.members)
	defer func() { p.members = p.members[:base] }()
	open := len(dst)
	dst = append(dst, '{')
	sorted := true
	for {
		if p.pos >= len(p.buf) || p.buf[p.pos] != '"' {
			return dst, p.errorf("unexpected %s, want a member name", p.describe())
		}
		var m member
		var err error
		m.start = len(dst)
		if dst, m.escaped, err = p.appendStr(dst); err != nil {
			return dst, err
		}
		m.keyEnd = len(dst)
		p.skipSpace()
		if p.pos >= len(p.buf) || p.buf[p.pos] != ':' {
			return dst, p.errorf("unexpected %s after member name %s, want ':'", p.describe(), dst[m.start:m.keyEnd])
		}
		p.pos++
		p.skipSpace()
		dst = append(dst, ':')
		if dst, err = p.value(dst); err != nil {
			return dst, inPath(err, decodeString(dst[m.start:m.keyEnd]), -1)
		}
		m.end = len(dst)
		if n := len(p.members); n > base && sorted && compareMemberKeys(dst, p.members[n-1], m) >= 0 {
			sorted = false
		}
		p.members = append(p.members, m)
		p.skipSpace()
		if p.pos >= len(p.buf) {
			return dst, p.errorf("unexpected end of input in an object")
		}
		if c := p.buf[p.pos]; c == ',' {
			p.pos++
			p.skipSpace()
			dst = append(dst, ',')
			continue
		} else if c == '}' {
			p.pos++
			break
		}
		return dst, p.errorf("unexpected %s in an object, want ',' or '}'", p.describe())
	}
	if !sorted {
		ms := p.members[base:]
		slices.SortStableFunc(ms, func(a, b member) int { return compareMemberKeys(dst, a, b) })
		for i := 1; i < len(ms); i++ {
			if compareMemberKeys(dst, ms[i-1], ms[i]) == 0 {
				return dst, p.errorf("duplicate member name %s", dst[ms[i].start:ms[i].keyEnd])
			}
		}
		p.tmp = append(p.tmp[:0], dst[open:]...)
		dst = append(dst[:open], '{')
		for i, m := range ms {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, p.tmp[m.start-open:m.end-open]...)
		}
	}
	return append(dst, '}'), nil
}

func (p *parser) array(dst []byte) ([]byte, error) {
	p.depth++
	if p.depth > MaxDepth {
		return dst, p.errorf("nesting deeper than %d", MaxDepth)
	}
	defer func() { p.depth-- }()
	p.pos++ // '['
	p.skipSpace()
	dst = append(dst, '[')
	if p.pos < len(p.buf) && p.buf[p.pos] == ']' {
		p.pos++
		return append(dst, ']'), nil
	}
	for i := 0; ; i++ {
		var err error
		if dst, err = p.value(dst); err != nil {
			return dst, inPath(err, "", i)
		}
		p.skipSpace()
		if p.pos >= len(p.buf) {
			return dst, p.errorf("unexpected end of input in an array")
		}
		if c := p.buf[p.pos]; c == ',' {
			p.pos++
			p.skipSpace()
			dst = append(dst, ',')
			continue
		} else if c == ']' {
			p.pos++
			return append(dst, ']'), nil
		}
		return dst, p.errorf("unexpected %s in an array, want ',' or ']'", p.describe())
	}
}

// plainPrefix returns the index of the first byte at or after i that a
// JSON string cannot copy as it is: '"', '\\', a control character or a
// non-ASCII byte. It looks at eight bytes at a time.
func plainPrefix[T string | []byte](b T, i int) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(b); i += 8 {
		w := b[i : i+8]
		x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		q := x ^ (lo * '"')
		bs := x ^ (lo * '\\')
		if ((x-lo*0x20)&^x|(q-lo)&^q|(bs-lo)&^bs|x)&hi != 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return i
		}
	}
	return i
}

// appendStr parses a JSON string at p.pos and appends its canonical form.
// escaped reports whether the canonical form contains an escape.
func (p *parser) appendStr(dst []byte) (out []byte, escaped bool, err error) {
	p.pos++ // opening quote
	i := plainPrefix(p.buf, p.pos)
	if i < len(p.buf) && p.buf[i] == '"' {
		dst = append(dst, '"')
		dst = append(dst, p.buf[p.pos:i]...)
		p.pos = i + 1
		return append(dst, '"'), false, nil
	}
	s, err := p.str()
	if err != nil {
		return dst, false, err
	}
	n := len(dst)
	dst = AppendString(dst, s)
	return dst, bytes.IndexByte(dst[n:], '\\') >= 0, nil
}

// str parses a JSON string at p.pos (just past its opening quote) and
// returns its value.
func (p *parser) str() (string, error) {
	start := p.pos
	// Fast path: printable ASCII without escapes.
	p.pos = plainPrefix(p.buf, p.pos)
	if p.pos < len(p.buf) && p.buf[p.pos] == '"' {
		s := string(p.buf[start:p.pos])
		p.pos++
		return s, nil
	}
	out := append([]byte(nil), p.buf[start:p.pos]...)
	for p.pos < len(p.buf) {
		c := p.buf[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(out), nil
		case c < 0x20:
			return "", p.errorf("control character 0x%02x in a string must be escaped", c)
		case c == '\\':
			if p.pos+1 >= len(p.buf) {
				return "", p.errorf("unexpected end of input in a string")
			}
			e := p.buf[p.pos+1]
			p.pos += 2
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, err := p.hex4()
				if err != nil {
					return "", err
				}
				if utf16.IsSurrogate(r) {
					if r >= 0xdc00 || p.pos+1 >= len(p.buf) || p.buf[p.pos] != '\\' || p.buf[p.pos+1] != 'u' {
						return "", p.errorf("lone UTF-16 surrogate \\u%04x in a string", r)
					}
					p.pos += 2
					r2, err := p.hex4()
					if err != nil {
						return "", err
					}
					r = utf16.DecodeRune(r, r2)
					if r == utf8.RuneError {
						return "", p.errorf("invalid UTF-16 surrogate pair in a string")
					}
				}
				out = utf8.AppendRune(out, r)
			default:
				p.pos--
				return "", p.errorf("invalid escape '\\%c' in a string", e)
			}
		case c < 0x80:
			j := plainPrefix(p.buf, p.pos)
			out = append(out, p.buf[p.pos:j]...)
			p.pos = j
		default:
			r, n := utf8.DecodeRune(p.buf[p.pos:])
			if r == utf8.RuneError && n <= 1 {
				return "", p.errorf("invalid UTF-8 in a string")
			}
			out = append(out, p.buf[p.pos:p.pos+n]...)
			p.pos += n
		}
	}
	return "", p.errorf("unexpected end of input in a string")
}

func (p *parser) hex4() (rune, error) {
	if p.pos+4 > len(p.buf) {
		return 0, p.errorf("unexpected end of input in a \\u escape")
	}
	var r rune
	for _, c := range p.buf[p.pos : p.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, p.errorf("invalid \\u escape in a string")
		}
	}
	p.pos += 4
	return r, nil
}

func (p *parser) number(dst []byte) ([]byte, error) {
	start := p.pos
	isInt := true
	if p.buf[p.pos] == '-' {
		p.pos++
	}
	digits := func() int {
		n := 0
		for p.pos < len(p.buf) && p.buf[p.pos] >= '0' && p.buf[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	if p.pos < len(p.buf) && p.buf[p.pos] == '0' {
		p.pos++
		if p.pos < len(p.buf) && p.buf[p.pos] >= '0' && p.buf[p.pos] <= '9' {
			return dst, p.errorf("number with a leading zero")
		}
	} else if digits() == 0 {
		return dst, p.errorf("unexpected %s in a number, want a digit", p.describe())
	}
	if p.pos < len(p.buf) && p.buf[p.pos] == '.' {
		isInt = false
		p.pos++
		if digits() == 0 {
			return dst, p.errorf("unexpected %s in a number, want a digit after '.'", p.describe())
		}
	}
	if p.pos < len(p.buf) && (p.buf[p.pos] == 'e' || p.buf[p.pos] == 'E') {
		isInt = false
		p.pos++
		if p.pos < len(p.buf) && (p.buf[p.pos] == '+' || p.buf[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return dst, p.errorf("unexpected %s in a number, want an exponent digit", p.describe())
		}
	}
	lit := p.buf[start:p.pos]
	if isInt {
		mag := lit
		if mag[0] == '-' {
			mag = mag[1:]
		}
		// I-JSON: integers must lie within ±(2^53-1), where a double holds
		// every integer exactly; such a literal is already canonical.
		if len(mag) > 16 || len(mag) == 16 && string(mag) > "9007199254740991" {
			// Unless the literal is exactly the canonical form of its double,
			// as 1e20 is written: then nothing is lost, and canonical output
			// must parse again.
			if f, err := strconv.ParseFloat(string(lit), 64); err == nil {
				if c, err := AppendNumber(nil, f); err == nil && string(c) == string(lit) {
					return append(dst, lit...), nil
				}
			}
			p.pos = start
			return dst, p.errorf("integer %s is beyond ±(2^53-1) and would lose precision; send it as a string", lit)
		}
		if string(lit) == "-0" {
			return append(dst, '0'), nil
		}
		return append(dst, lit...), nil
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) && !math.IsInf(f, 0) {
			f = 0 // underflow rounds to zero, as ECMAScript does
		} else {
			p.pos = start
			return dst, p.errorf("number %s is out of the range of a double", lit)
		}
	}
	return AppendNumber(dst, f)
}

// AppendNumber appends f serialised as ECMAScript's Number.prototype.toString
// does (RFC 8785 section 3.2.2.3). NaN and infinities are errors.
func AppendNumber(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, fmt.Errorf("append number %v: not representable in JSON: %w", f, ErrInvalid)
	}
	if f == 0 {
		return append(dst, '0'), nil
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	// Shortest digits that round-trip, as d.ddddde±x.
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	epos := bytes.IndexByte(e, 'e')
	mant, exp := e[:epos], e[epos+1:]
	var digits [24]byte
	k := 0
	for _, c := range mant {
		if c != '.' {
			digits[k] = c
			k++
		}
	}
	x, _ := strconv.Atoi(string(exp))
	n := x + 1 // f = 0.d1…dk × 10^n
	d := digits[:k]
	switch {
	case k <= n && n <= 21:
		dst = append(dst, d...)
		for range n - k {
			dst = append(dst, '0')
		}
	case 0 < n && n <= 21:
		dst = append(dst, d[:n]...)
		dst = append(dst, '.')
		dst = append(dst, d[n:]...)
	case -6 < n && n <= 0:
		dst = append(dst, '0', '.')
		for range -n {
			dst = append(dst, '0')
		}
		dst = append(dst, d...)
	default:
		dst = append(dst, d[0])
		if k > 1 {
			dst = append(dst, '.')
			dst = append(dst, d[1:]...)
		}
		dst = append(dst, 'e')
		if n-1 >= 0 {
			dst = append(dst, '+')
		}
		dst = strconv.AppendInt(dst, int64(n-1), 10)
	}
	return dst, nil
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as an RFC 8785 canonical JSON string. s must be
// valid UTF-8 (invalid bytes are written as U+FFFD).
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if i = plainPrefix(s, i); i == len(s) {
			break
		}
		c := s[i]
		if c >= 0x80 {
			// A run of non-ASCII text is decoded here, rune by rune.
			for i < len(s) && s[i] >= 0x80 {
				r, n := utf8.DecodeRuneInString(s[i:])
				if r == utf8.RuneError && n == 1 {
					dst = append(dst, s[start:i]...)
					dst = append(dst, "\ufffd"...)
					i++
					start = i
					continue
				}
				i += n
			}
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// CompareKeys orders member names as RFC 8785 requires: by their UTF-16 code
// units. It differs from byte order only between characters above U+FFFF
// and characters from U+E000 to U+FFFF.
func CompareKeys(a, b string) int {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	if i == n {
		return len(a) - len(b)
	}
	if a[i] < 0x80 && b[i] < 0x80 {
		return int(a[i]) - int(b[i])
	}
	// Back up to the start of the differing runes and compare as UTF-16.
	for i > 0 && !utf8.RuneStart(a[i]) {
		i--
	}
	ra, _ := utf8.DecodeRuneInString(a[i:])
	rb, _ := utf8.DecodeRuneInString(b[i:])
	ua, ub := utf16Unit(ra), utf16Unit(rb)
	if ua != ub {
		return int(ua) - int(ub)
	}
	return int(ra) - int(rb)
}

// unsafeString views b as a string without copying; b must not change
// while the string is in use.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// utf16Unit returns the first UTF-16 code unit of r.
func utf16Unit(r rune) uint16 {
	if r >= 0x10000 {
		r1, _ := utf16.EncodeRune(r)
		return uint16(r1)
	}
	return uint16(r)
}
