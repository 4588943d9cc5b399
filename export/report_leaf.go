package export

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// leafView gives the few members of a leaf a report counts, without
// building the whole record: the report reads every record of a period,
// and infertrail.ParseLeaf, which also checks that the leaf is canonical,
// would take most of its time. Whether leaves are canonical and match the
// tree is 'infertrail verify's job.
type leafView struct {
	source      string
	actorID     string
	credential  string
	attributes  []byte // the attributes object, or nil
	commitments []byte // the commitments object, or nil
}

// parseLeafView reads a leaf's top-level members; ok is false when the
// leaf is not a well-formed JSON object.
func parseLeafView(leaf []byte) (v leafView, ok bool) {
	ok = jsonMembers(leaf, func(key, val []byte) bool {
		switch string(key) {
		case "source":
			v.source = jsonString(val)
		case "actor":
			return jsonMembers(val, func(k, x []byte) bool {
				switch string(k) {
				case "id":
					v.actorID = jsonString(x)
				case "credential_fingerprint":
					v.credential = jsonString(x)
				}
				return true
			})
		case "attributes":
			v.attributes = val
		case "commitments":
			v.commitments = val
		}
		return true
	})
	return v, ok
}

// attr returns the raw value of an attribute, or nil.
func (v *leafView) attr(name string) []byte { return jsonMember(v.attributes, name) }

// attrString returns a string attribute's value, or "".
func (v *leafView) attrString(name string) string { return jsonString(v.attr(name)) }

func (v *leafView) attrBool(name string) bool { return string(v.attr(name)) == "true" }

func (v *leafView) attrNumber(name string) (float64, bool) {
	f, err := strconv.ParseFloat(string(v.attr(name)), 64)
	return f, err == nil
}

func (v *leafView) committed(field string) bool { return jsonMember(v.commitments, field) != nil }

// jsonMember returns the raw value of the member name of a JSON object, or nil.
func jsonMember(obj []byte, name string) []byte {
	var out []byte
	jsonMembers(obj, func(k, v []byte) bool {
		if string(k) == name {
			out = v
			return false
		}
		return true
	})
	return out
}

// jsonMembers calls fn with each member of a JSON object: its key (the
// raw text between the quotes, decoded if it has escapes) and its raw
// value, until fn returns false. It reports whether obj was well formed
// as far as it was read.
func jsonMembers(obj []byte, fn func(key, val []byte) bool) bool {
	i := jsonSkipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return false
	}
	i = jsonSkipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return true
	}
	for i < len(obj) {
		if obj[i] != '"' {
			return false
		}
		kend := jsonStringEnd(obj, i)
		if kend < 0 {
			return false
		}
		key := obj[i+1 : kend-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var s string
			if json.Unmarshal(obj[i:kend], &s) != nil {
				return false
			}
			key = []byte(s)
		}
		i = jsonSkipSpace(obj, kend)
		if i >= len(obj) || obj[i] != ':' {
			return false
		}
		vstart := jsonSkipSpace(obj, i+1)
		vend := jsonValueEnd(obj, vstart)
		if vend < 0 {
			return false
		}
		if !fn(key, obj[vstart:vend]) {
			return true
		}
		i = jsonSkipSpace(obj, vend)
		if i >= len(obj) {
			return false
		}
		switch obj[i] {
		case ',':
			i = jsonSkipSpace(obj, i+1)
		case '}':
			return true
		default:
			return false
		}
	}
	return false
}

func jsonSkipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// jsonStringEnd returns the index just past the string starting at b[i], or -1.
func jsonStringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// jsonValueEnd returns the index just past the value starting at b[i], or -1.
func jsonValueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return jsonStringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				e := jsonStringEnd(b, j)
				if e < 0 {
					return -1
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\t' && b[j] != '\r' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// jsonString returns the value of a raw JSON string, or "" when raw is
// not a string.
func jsonString(raw []byte) string {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return ""
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1])
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}
