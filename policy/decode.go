package policy

import (
	"errors"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// DecodeObject decodes a JSON object into the Go values of an input
// document, as json.Unmarshal into a map[string]any does: objects as
// map[string]any, arrays as []any, numbers as float64, invalid UTF-8 and
// unpaired surrogates as U+FFFD, the last of duplicate names. It reads
// data once, without reflection, in about half the time, for a gateway
// that builds the input document from a request body on every call.
// Where json.Unmarshal gives an error, so does DecodeObject; for a number
// beyond float64, as json.Unmarshal, it gives the object with nil in its
// place along with the error. JSON null gives a nil map and no error.
func DecodeObject(data []byte) (map[string]any, error) {
	d := decoder{data: data}
	v, err := d.document()
	if err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case map[string]any:
		return v, d.rangeErr
	case nil: // null, or a number beyond float64
		return nil, d.rangeErr
	}
	return nil, fmt.Errorf("decode JSON: a %s, want an object", kindOf(v))
}

func kindOf(v any) string {
	switch v.(type) {
	case []any:
		return "array"
	case string:
		return "string"
	case float64:
		return "number"
	}
	return "boolean"
}

// maxNesting is json.Unmarshal's limit on nested arrays and objects.
const maxNesting = 10000

var errEnd = errors.New("unexpected end of JSON input")

// decoder reads one JSON text.
type decoder struct {
	data  []byte
	pos   int
	depth int
	// rangeErr is the first number beyond float64: json.Unmarshal decodes
	// the rest and then reports it.
	rangeErr error
	// items holds the elements of the arrays being read, one after the
	// other, so that each array is allocated once, at its size.
	items []any
	buf   []byte // a string with escapes, as it is unescaped
}

func (d *decoder) syntaxError() error {
	if d.pos >= len(d.data) {
		return fmt.Errorf("decode JSON: %w", errEnd)
	}
	return fmt.Errorf("decode JSON: invalid character %q at offset %d", d.data[d.pos], d.pos)
}

// document reads the one value of the text.
func (d *decoder) document() (any, error) {
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	d.space()
	if d.pos < len(d.data) {
		return nil, d.syntaxError()
	}
	return v, nil
}

func (d *decoder) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decoder) value() (any, error) {
	d.space()
	if d.pos >= len(d.data) {
		return nil, d.syntaxError()
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		return d.string()
	case c == '-' || '0' <= c && c <= '9':
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	}
	return nil, d.syntaxError()
}

func (d *decoder) literal(lit string) error {
	for i := range len(lit) {
		if d.pos >= len(d.data) || d.data[d.pos] != lit[i] {
			return d.syntaxError()
		}
		d.pos++
	}
	return nil
}

func (d *decoder) nest() error {
	if d.depth++; d.depth > maxNesting {
		return fmt.Errorf("decode JSON: nested more than %d deep at offset %d", maxNesting, d.pos)
	}
	return nil
}

func (d *decoder) object() (any, error) {
	if err := d.nest(); err != nil {
		return nil, err
	}
	d.pos++ // {
	m := map[string]any{}
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		d.depth--
		return m, nil
	}
	for {
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, d.syntaxError()
		}
		k, err := d.string()
		if err != nil {
			return nil, err
		}
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.syntaxError()
		}
		d.pos++
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		m[k] = v
		end, err := d.after('}')
		if err != nil {
			return nil, err
		}
		if end {
			return m, nil
		}
	}
}

// after reads what follows a member or an element: a comma, or the end of
// the object or array, which closer is. It reports whether that ended.
func (d *decoder) after(closer byte) (bool, error) {
	d.space()
	if d.pos >= len(d.data) {
		return false, d.syntaxError()
	}
	switch d.data[d.pos] {
	case ',':
		d.pos++
		return false, nil
	case closer:
		d.pos++
		d.depth--
		return true, nil
	}
	return false, d.syntaxError()
}

func (d *decoder) array() (any, error) {
	if err := d.nest(); err != nil {
		return nil, err
	}
	d.pos++ // [
	start := len(d.items)
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		d.depth--
		return []any{}, nil
	}
	for {
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		d.items = append(d.items, v)
		end, err := d.after(']')
		if err != nil {
			return nil, err
		}
		if end {
			a := make([]any, len(d.items)-start)
			copy(a, d.items[start:])
			clear(d.items[start:])
			d.items = d.items[:start]
			return a, nil
		}
	}
}

// number reads a number as JSON writes it and converts it as
// json.Unmarshal does.
func (d *decoder) number() (any, error) {
	data := d.data
	start := d.pos
	i := start
	if data[i] == '-' {
		i++
	}
	digits := func() bool {
		n := i
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
		return i > n
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case !digits():
		d.pos = i
		return nil, d.syntaxError()
	}
	if i < len(data) && data[i] == '.' {
		i++
		if !digits() {
			d.pos = i
			return nil, d.syntaxError()
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if !digits() {
			d.pos = i
			return nil, d.syntaxError()
		}
	}
	d.pos = i
	f, err := strconv.ParseFloat(string(data[start:i]), 64)
	if err != nil {
		if d.rangeErr == nil {
			d.rangeErr = fmt.Errorf("decode JSON: number %s at offset %d: %w", data[start:i], start, err)
		}
		return nil, nil
	}
	return f, nil
}

// string reads a string; most are plain ASCII with no escape, and are
// copied as they are.
func (d *decoder) string() (string, error) {
	data := d.data
	start := d.pos + 1
	for i := start; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			d.pos = i + 1
			return string(data[start:i]), nil
		case c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			return d.slowString(start, i)
		}
	}
	d.pos = len(data)
	return "", d.syntaxError()
}

// slowString reads the rest of a string that starts at start and has an
// escape, a control character or a byte beyond ASCII at i.
func (d *decoder) slowString(start, i int) (string, error) {
	data := d.data
	if d.buf == nil {
		d.buf = make([]byte, 0, 256)
	}
	b := append(d.buf[:0], data[start:i]...)
	for i < len(data) {
		switch c := data[i]; {
		case c == '"':
			d.pos = i + 1
			d.buf = b
			return string(b), nil
		case c < 0x20:
			d.pos = i
			return "", d.syntaxError()
		case c < utf8.RuneSelf && c != '\\':
			b = append(b, c)
			i++
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n == 1 {
				b = utf8.AppendRune(b, unicode.ReplacementChar)
			} else {
				b = append(b, data[i:i+n]...)
			}
			i += n
		default: // an escape
			if i+1 >= len(data) {
				d.pos = len(data)
				return "", d.syntaxError()
			}
			i++
			switch data[i] {
			case '"', '\\', '/':
				b = append(b, data[i])
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, ok := hex4(data, i+1)
				if !ok {
					d.pos = min(i+1, len(data))
					return "", d.syntaxError()
				}
				i += 4
				if utf16.IsSurrogate(r) {
					// A pair only if the next escape completes it.
					if i+6 < len(data) && data[i+1] == '\\' && data[i+2] == 'u' {
						if r2, ok := hex4(data, i+3); ok {
							if p := utf16.DecodeRune(r, r2); p != unicode.ReplacementChar {
								b = utf8.AppendRune(b, p)
								i += 7
								continue
							}
						}
					}
					r = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, r)
			default:
				d.pos = i
				return "", d.syntaxError()
			}
			i++
		}
	}
	d.pos = len(data)
	return "", d.syntaxError()
}

// hex4 reads the four hex digits of a \u escape at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
