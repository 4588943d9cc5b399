package infertrail

import (
	"bytes"
	"iter"
	"unicode/utf8"
)

// These helpers walk JSON that is already canonical (the output of this
// package's parser): no white space, well-formed, strings with only the
// canonical escapes. They must not be given arbitrary input.

// valueEnd returns the index just past the canonical value starting at b[i].
func valueEnd(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = stringEnd(b, i+1)
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',', ':':
		default: // number or literal
			if depth == 0 {
				for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' {
					i++
				}
				return i
			}
		}
	}
	return i
}

// stringEnd returns the index of the closing quote of the canonical string
// whose contents start at b[i].
func stringEnd(b []byte, i int) int {
	for {
		j := i + bytes.IndexByte(b[i:], '"')
		// The quote is escaped if an odd number of backslashes precede it.
		k := j
		for k > i && b[k-1] == '\\' {
			k--
		}
		if (j-k)%2 == 0 {
			return j
		}
		i = j + 1
	}
}

// objectMembers is ObjectMembers with the names as strings.
func objectMembers(obj []byte) iter.Seq2[string, []byte] {
	return func(yield func(string, []byte) bool) {
		for k, v := range ObjectMembers(obj) {
			if !yield(string(k), v) {
				return
			}
		}
	}
}

// arrayElements yields each element of a canonical array.
func arrayElements(arr []byte) iter.Seq2[int, []byte] {
	return func(yield func(int, []byte) bool) {
		i, n := 1, 0
		for i < len(arr)-1 {
			end := valueEnd(arr, i)
			if !yield(n, arr[i:end]) {
				return
			}
			n++
			i = end + 1
		}
	}
}

// SplitArray returns the elements of a canonical JSON array, or nil if v is
// not an array. JoinArray(SplitArray(v)) == v.
func SplitArray(v []byte) [][]byte {
	if len(v) < 2 || v[0] != '[' {
		return nil
	}
	var out [][]byte
	for _, el := range arrayElements(v) {
		out = append(out, el)
	}
	if out == nil {
		out = [][]byte{}
	}
	return out
}

// ObjectMembers yields the name and value of each member of a canonical
// JSON object, in order; nothing if v is not an object. A name without
// escapes is a slice of v, not a copy: compare it (switch string(name)
// allocates nothing), or copy it to keep it.
func ObjectMembers(v []byte) iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		if len(v) < 2 || v[0] != '{' {
			return
		}
		i := 1 // past '{'
		for i < len(v)-1 {
			kend := valueEnd(v, i)
			name := v[i+1 : kend-1]
			if hasBackslash(name) {
				name = []byte(decodeString(v[i:kend]))
			}
			vstart := kend + 1 // past ':'
			vend := valueEnd(v, vstart)
			if !yield(name, v[vstart:vend]) {
				return
			}
			i = vend + 1 // past ','
		}
	}
}

// Texts yields the text of every string of a canonical JSON value, member
// names included, and the literal of every number, in order.
func Texts(v []byte) iter.Seq[string] {
	return func(yield func(string) bool) {
		for i := 0; i < len(v); {
			switch c := v[i]; {
			case c == '"':
				end := stringEnd(v, i+1)
				if !yield(decodeString(v[i : end+1])) {
					return
				}
				i = end + 1
			case c == '-' || '0' <= c && c <= '9':
				j := i + 1
				for j < len(v) && ('0' <= v[j] && v[j] <= '9' || v[j] == '.' || v[j] == 'e' || v[j] == 'E' || v[j] == '+' || v[j] == '-') {
					j++
				}
				if !yield(string(v[i:j])) {
					return
				}
				i = j
			default:
				i++
			}
		}
	}
}

// StringValue returns the text of a canonical JSON string, and false if v
// is not a string.
func StringValue(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	return decodeString(v), true
}

// JoinArray appends the canonical array of the canonical elements.
func JoinArray(dst []byte, elems [][]byte) []byte {
	dst = append(dst, '[')
	for i, e := range elems {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, e...)
	}
	return append(dst, ']')
}

// decodeString decodes a canonical JSON string literal (with its quotes).
func decodeString(b []byte) string {
	b = b[1 : len(b)-1]
	esc := false
	for _, c := range b {
		if c == '\\' {
			esc = true
			break
		}
	}
	if !esc {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch b[i] {
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
		case 'u': // \u00XX, a control character
			v := unhex(b[i+3])<<4 | unhex(b[i+4])
			out = utf8.AppendRune(out, rune(v))
			i += 4
		default: // '"' or '\\'
			out = append(out, b[i])
		}
	}
	return string(out)
}

func unhex(c byte) byte {
	if c >= 'a' {
		return c - 'a' + 10
	}
	return c - '0'
}
