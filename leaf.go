package infertrail

import (
	"fmt"
	"strconv"
	"time"
)

// LeafFields are the fields of a leaf that a store repeats in its columns
// and content references: what verification compares the leaf with.
type LeafFields struct {
	Seq       int64
	ID        UUID
	Tenant    string
	Kind      Kind
	Time      int64 // Unix nanoseconds
	Received  int64 // Unix nanoseconds
	SessionID string
	TraceID   string
	ActorID   string
	// Commitments holds the leaf's content commitments in the leaf's
	// order: by field name, as RFC 8785 sorts them.
	Commitments []FieldCommitment
}

// FieldCommitment is a leaf's commitment to one content field.
type FieldCommitment struct {
	Field string
	Sum   string // "sha256:<hex>", as Commitment returns it
}

// Commitment returns the commitment to field, and whether there is one.
func (f *LeafFields) Commitment(field string) (string, bool) {
	for _, c := range f.Commitments {
		if c.Field == field {
			return c.Sum, true
		}
	}
	return "", false
}

// CheckLeaf accepts exactly the leaves ParseLeaf accepts, with the same
// error for those it refuses, and sets f to the fields ParseLeaf would
// return for them. It allocates little: it is the leaf check of
// verification, which reads every leaf of a log. The strings in f share
// memory with leaf, which must not change while they are in use, and f's
// Commitments slice is reused.
func CheckLeaf(leaf []byte, f *LeafFields) error {
	if checkLeaf(leaf, f) {
		return nil
	}
	// Refused: ParseLeaf says why.
	if _, err := ParseLeaf(leaf); err != nil {
		return err
	}
	return fmt.Errorf("check leaf: ParseLeaf accepts a leaf CheckLeaf refuses: %w", ErrInvalid)
}

// checkLeaf reports whether leaf is a leaf ParseLeaf accepts, and sets f.
// It makes the checks ParseLeaf makes, field by field (setField in leaf
// mode, with the default Limits), and instead of re-encoding the record it
// checks what makes the re-encoding equal the leaf: a leaf in canonical
// form re-encodes to itself unless it holds an empty actor, attributes,
// commitments or links member (AppendLeaf leaves those out), an id or a
// link id not in lowercase, or a time not in FormatTime's form.
func checkLeaf(leaf []byte, f *LeafFields) bool {
	commitments := f.Commitments[:0]
	*f = LeafFields{}
	if len(leaf) < 2 || leaf[0] != '{' || !isCanonical(leaf) {
		return false
	}
	lim := Limits{}.withDefaults()
	const (
		haveKind = 1 << iota
		haveID
		haveReceived
		haveSchema
		haveSeq
		haveSource
		haveTenant
		haveTime
		haveAll = 1<<iota - 1
	)
	have := 0
	for i := 1; i < len(leaf)-1; {
		kend := valueEnd(leaf, i)
		key := leaf[i+1 : kend-1] // no name the leaf knows holds an escape
		vstart := kend + 1
		vend := valueEnd(leaf, vstart)
		val := leaf[vstart:vend]
		i = vend + 1
		switch string(key) {
		case "kind":
			s, ok := leafString(val, 64)
			if !ok || !Kind(s).Valid() {
				return false
			}
			f.Kind, have = Kind(s), have|haveKind
		case "id":
			u, ok := leafUUID(val)
			if !ok {
				return false
			}
			f.ID, have = u, have|haveID
		case "time", "received_time":
			t, ok := leafTime(val)
			if !ok {
				return false
			}
			if key[0] == 't' {
				f.Time, have = t, have|haveTime
			} else {
				f.Received, have = t, have|haveReceived
			}
		case "tenant":
			s, ok := leafString(val, 128)
			if !ok || !validTenant(s) {
				return false
			}
			f.Tenant, have = s, have|haveTenant
		case "session_id":
			s, ok := leafText(val, lim.MaxStringBytes)
			if !ok {
				return false
			}
			f.SessionID = s
		case "trace_id", "span_id", "parent_span_id":
			n := 16
			if key[0] == 't' {
				n = 32
			}
			s, ok := leafString(val, 64)
			if !ok || !validHexID(s, n) {
				return false
			}
			if key[0] == 't' {
				f.TraceID = s
			}
		case "actor":
			if !leafActor(val, lim, f) {
				return false
			}
		case "links":
			if !leafLinks(val, lim) {
				return false
			}
		case "attributes":
			if !leafMap(val, lim.MaxAttributes, lim.MaxAttributeBytes, nil) {
				return false
			}
		case "commitments":
			ok := leafMap(val, 1<<16, 128, func(name string, v []byte) bool {
				s, ok := leafString(v, 128)
				if !ok || !validCommitment(s) {
					return false
				}
				commitments = append(commitments, FieldCommitment{Field: name, Sum: s})
				return true
			})
			if !ok {
				return false
			}
		case "seq":
			n, err := strconv.ParseInt(unsafeString(val), 10, 64)
			if err != nil || n < 0 {
				return false
			}
			var b [20]byte
			if string(strconv.AppendInt(b[:0], n, 10)) != string(val) {
				return false
			}
			f.Seq, have = n, have|haveSeq
		case "schema_version":
			var b [20]byte
			if string(val) != string(strconv.AppendInt(b[:0], SchemaVersion, 10)) {
				return false
			}
			have |= haveSchema
		case "source":
			if _, ok := leafText(val, 64); !ok {
				return false
			}
			have |= haveSource
		default: // content, or a field no leaf has
			return false
		}
	}
	f.Commitments = commitments
	return have == haveAll
}

// isCanonical reports whether b is one JSON value in RFC 8785 canonical
// form, by the parser that makes that form.
func isCanonical(b []byte) bool {
	p := getParser(b)
	defer putParser(p)
	var err error
	p.canon, err = p.value(p.canon[:0])
	return err == nil && p.pos == len(b) && string(p.canon) == string(b)
}

// leafString returns the value of the canonical string val, sharing val's
// memory unless it holds escapes, if it is a string of at most max bytes.
func leafString(val []byte, max int) (string, bool) {
	if val[0] != '"' {
		return "", false
	}
	var s string
	if b := val[1 : len(val)-1]; !hasBackslash(b) {
		s = unsafeString(b)
	} else {
		s = decodeString(val)
	}
	return s, len(s) <= max
}

func hasBackslash(b []byte) bool {
	for _, c := range b {
		if c == '\\' {
			return true
		}
	}
	return false
}

// leafText is textField: a non-empty string without control characters.
func leafText(val []byte, max int) (string, bool) {
	s, ok := leafString(val, max)
	return s, ok && s != "" && !hasControl(s)
}

// leafUUID parses a UUID in its lowercase canonical form.
func leafUUID(val []byte) (UUID, bool) {
	s, ok := leafString(val, 64)
	if !ok {
		return UUID{}, false
	}
	u, err := ParseUUID(s)
	if err != nil {
		return UUID{}, false
	}
	var b [36]byte
	u.encode(b[:])
	return u, string(b[:]) == s
}

// leafTime parses a time in FormatTime's form, in Unix nanoseconds.
func leafTime(val []byte) (int64, bool) {
	s, ok := leafString(val, 64)
	if !ok {
		return 0, false
	}
	t, err := parseTime(s)
	if err != nil {
		return 0, false
	}
	var b [64]byte
	if string(t.AppendFormat(b[:0], time.RFC3339Nano)) != s {
		return 0, false
	}
	return t.UnixNano(), true
}

// leafActor checks the actor member and sets f.ActorID.
func leafActor(val []byte, lim Limits, f *LeafFields) bool {
	if val[0] != '{' || len(val) == 2 { // AppendLeaf leaves out an empty actor
		return false
	}
	for i := 1; i < len(val)-1; {
		kend := valueEnd(val, i)
		key := val[i+1 : kend-1]
		vend := valueEnd(val, kend+1)
		s, ok := leafText(val[kend+1:vend], lim.MaxStringBytes)
		i = vend + 1
		if !ok {
			return false
		}
		switch string(key) {
		case "id":
			f.ActorID = s
		case "type", "on_behalf_of", "workload", "credential_fingerprint":
		default:
			return false
		}
	}
	return true
}

// leafLinks checks the links member: setLinks's checks, and link ids in
// lowercase, as AppendLeaf writes them.
func leafLinks(val []byte, lim Limits) bool {
	if val[0] != '[' || len(val) == 2 {
		return false
	}
	n := 0
	for i := 1; i < len(val)-1; n++ {
		end := valueEnd(val, i)
		el := val[i:end]
		i = end + 1
		if n >= lim.MaxLinks || el[0] != '{' {
			return false
		}
		var haveRel, haveID bool
		for j := 1; j < len(el)-1; {
			kend := valueEnd(el, j)
			key := el[j+1 : kend-1]
			vend := valueEnd(el, kend+1)
			v := el[kend+1 : vend]
			j = vend + 1
			switch string(key) {
			case "rel":
				s, ok := leafString(v, 64)
				if !ok || !validRel(s) {
					return false
				}
				haveRel = true
			case "id":
				if _, ok := leafUUID(v); !ok {
					return false
				}
				haveID = true
			default:
				return false
			}
		}
		if !haveRel || !haveID {
			return false
		}
	}
	return true
}

// leafMap makes valueMap's checks of a non-empty object (AppendLeaf leaves
// out an empty one) and calls member, if not nil, for each member.
func leafMap(val []byte, maxN, maxBytes int, member func(name string, v []byte) bool) bool {
	if val[0] != '{' || len(val) == 2 {
		return false
	}
	n := 0
	for i := 1; i < len(val)-1; n++ {
		kend := valueEnd(val, i)
		name, _ := leafString(val[i:kend], 1<<30)
		vend := valueEnd(val, kend+1)
		v := val[kend+1 : vend]
		i = vend + 1
		if n >= maxN || name == "" || len(name) > 256 || hasControl(name) || len(v) > maxBytes {
			return false
		}
		if member != nil && !member(name, v) {
			return false
		}
	}
	return true
}
