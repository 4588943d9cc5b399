package infertrail

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits bound what one record may hold. The zero value means the defaults.
type Limits struct {
	MaxStringBytes    int // metadata strings (tenant, actor, session…): default 1,024
	MaxAttributes     int // attributes per record: default 256
	MaxAttributeBytes int // one attribute value's canonical JSON: default 16 KiB
	MaxContentFields  int // content fields per record: default 64
	MaxContentBytes   int // one content field's canonical JSON: default 16 MiB
	MaxLinks          int // links per record: default 64
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxStringBytes, 1024)
	def(&l.MaxAttributes, 256)
	def(&l.MaxAttributeBytes, 16<<10)
	def(&l.MaxContentFields, 64)
	def(&l.MaxContentBytes, 16<<20)
	def(&l.MaxLinks, 64)
	return l
}

// ParseRecord parses one record as submitted to the ingest API (see
// docs/records.md), validates it, and returns it with every attribute and
// content value in canonical form. The second result is the canonical JSON
// of the record exactly as submitted, which identifies a retry.
//
// Fields the server assigns (seq, received_time, source) are not accepted.
// A missing id, time or tenant is left zero for the caller to fill.
func ParseRecord(src []byte, lim Limits) (*Record, []byte, error) {
	p := getParser(src)
	defer putParser(p)
	p.skipSpace()
	r, canon, err := p.record(lim.withDefaults(), false)
	if err != nil {
		return nil, nil, err
	}
	p.skipSpace()
	if p.pos != len(p.buf) {
		return nil, nil, p.errorf("unexpected %s after the record", p.describe())
	}
	return r, canon, nil
}

// ParseRecords parses a JSON array of records. An error names the index of
// the first bad record; the second result holds each record's canonical
// submitted form.
func ParseRecords(src []byte, lim Limits) ([]*Record, [][]byte, error) {
	lim = lim.withDefaults()
	p := getParser(src)
	defer putParser(p)
	p.skipSpace()
	if p.pos >= len(p.buf) || p.buf[p.pos] != '[' {
		return nil, nil, &FieldError{Record: -1, Field: "(body)", Reason: "want a JSON array of records", Err: ErrInvalid}
	}
	p.pos++
	p.skipSpace()
	// The canonical forms are about as long as the records' source text.
	p.arena = make([]byte, 0, len(src)+64)
	var recs []*Record
	var canons [][]byte
	if p.pos < len(p.buf) && p.buf[p.pos] == ']' {
		p.pos++
	} else {
		for {
			r, canon, err := p.record(lim, false)
			if err != nil {
				return nil, nil, atRecord(err, len(recs))
			}
			recs = append(recs, r)
			canons = append(canons, canon)
			p.skipSpace()
			if p.pos < len(p.buf) && p.buf[p.pos] == ',' {
				p.pos++
				p.skipSpace()
				continue
			}
			if p.pos < len(p.buf) && p.buf[p.pos] == ']' {
				p.pos++
				break
			}
			return nil, nil, atRecord(p.errorf("unexpected %s after a record, want ',' or ']'", p.describe()), len(recs)-1)
		}
	}
	p.skipSpace()
	if p.pos != len(p.buf) {
		return nil, nil, p.errorf("unexpected %s after the array", p.describe())
	}
	return recs, canons, nil
}

// atRecord sets the batch index on a FieldError, or wraps a syntax error
// into one.
func atRecord(err error, i int) error {
	if fe, ok := err.(*FieldError); ok {
		fe.Record = i
		return fe
	}
	return &FieldError{Record: i, Field: "(record)", Reason: err.Error(), Err: ErrInvalid}
}

// ParseLeaf parses a canonical leaf back into a record (with Seq,
// ReceivedTime, Source and Commitments set, and no Content). It fails unless
// leaf is exactly the canonical encoding of what it parses to.
func ParseLeaf(leaf []byte) (*Record, error) {
	p := getParser(leaf)
	defer putParser(p)
	r, canon, err := p.record(Limits{}.withDefaults(), true)
	if err != nil {
		return nil, err
	}
	if p.pos != len(leaf) {
		return nil, fmt.Errorf("parse leaf: trailing bytes: %w", ErrInvalid)
	}
	if string(canon) != string(leaf) {
		return nil, fmt.Errorf("parse leaf: not in canonical form: %w", ErrInvalid)
	}
	if enc := r.AppendLeaf(nil); string(enc) != string(leaf) {
		return nil, fmt.Errorf("parse leaf: does not re-encode to the same bytes: %w", ErrInvalid)
	}
	return r, nil
}

// record parses one record object. In leaf mode it accepts the server's
// fields and commitments instead of content.
func (p *parser) record(lim Limits, leaf bool) (*Record, []byte, error) {
	if p.pos >= len(p.buf) || p.buf[p.pos] != '{' {
		return nil, nil, &FieldError{Record: -1, Field: "(record)", Reason: "want a JSON object", Err: ErrInvalid}
	}
	dst := p.arena[len(p.arena):]
	if p.arena == nil {
		dst = make([]byte, 0, len(p.buf)-p.pos+16)
	}
	canon, err := p.object(dst)
	if err == nil && p.arena != nil && cap(dst) > 0 && &canon[:1][0] == &dst[:1][0] {
		// Written in the arena: the next record goes after it, and
		// appending to this one must not write over it.
		p.arena = p.arena[:len(p.arena)+len(canon)]
		canon = canon[:len(canon):len(canon)]
	}
	if err != nil {
		fe := &FieldError{Record: -1, Field: "(record)", Reason: err.Error(), Err: ErrInvalid}
		if se, ok := err.(*SyntaxError); ok && se.Path != "" {
			fe.Field = se.Path
			fe.Reason = fmt.Sprintf("%s (at byte %d)", se.Msg, se.Offset)
		}
		return nil, nil, fe
	}
	r := &Record{}
	seen := map[string]bool{}
	for key, val := range objectMembers(canon) {
		seen[key] = true
		if err := r.setField(key, val, lim, leaf); err != nil {
			return nil, nil, err
		}
	}
	if !seen["kind"] {
		return nil, nil, invalid("kind", "missing; want one of %s", kindList())
	}
	if leaf {
		for _, k := range []string{"id", "received_time", "schema_version", "seq", "source", "tenant", "time"} {
			if !seen[k] {
				return nil, nil, invalid(k, "missing from the leaf")
			}
		}
	}
	return r, canon, nil
}

func kindList() string {
	s := make([]string, len(Kinds))
	for i, k := range Kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

func (r *Record) setField(key string, val []byte, lim Limits, leaf bool) error {
	switch key {
	case "kind":
		s, err := stringField(key, val, 64)
		if err != nil {
			return err
		}
		if !Kind(s).Valid() {
			return invalid(key, "%q is not a record kind; want one of %s", s, kindList())
		}
		r.Kind = Kind(s)
	case "id":
		s, err := stringField(key, val, 64)
		if err != nil {
			return err
		}
		u, err := ParseUUID(s)
		if err != nil {
			return invalid(key, "%q is not a UUID (want xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", s)
		}
		if leaf && u.String() != s {
			return invalid(key, "not in lowercase canonical form")
		}
		r.ID = u
	case "time", "received_time":
		if key == "received_time" && !leaf {
			return invalid(key, "is set by the server")
		}
		s, err := stringField(key, val, 64)
		if err != nil {
			return err
		}
		t, err := parseTime(s)
		if err != nil {
			return invalid(key, "%v", err)
		}
		if key == "time" {
			r.Time = t
		} else {
			r.ReceivedTime = t
		}
	case "tenant":
		s, err := stringField(key, val, 128)
		if err != nil {
			return err
		}
		if !validTenant(s) {
			return invalid(key, "%q: want 1 to 128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit", s)
		}
		r.Tenant = s
	case "session_id":
		s, err := textField(key, val, lim.MaxStringBytes)
		if err != nil {
			return err
		}
		r.SessionID = s
	case "trace_id", "span_id", "parent_span_id":
		n := 16
		if key == "trace_id" {
			n = 32
		}
		s, err := stringField(key, val, 64)
		if err != nil {
			return err
		}
		if !validHexID(s, n) {
			return invalid(key, "%q: want %d lowercase hex digits, not all zero (W3C trace context)", s, n)
		}
		switch key {
		case "trace_id":
			r.TraceID = s
		case "span_id":
			r.SpanID = s
		default:
			r.ParentSpanID = s
		}
	case "actor":
		return r.setActor(val, lim)
	case "links":
		return r.setLinks(val, lim)
	case "attributes":
		m, err := valueMap(key, val, lim.MaxAttributes, lim.MaxAttributeBytes)
		if err != nil {
			return err
		}
		r.Attributes = m
	case "content":
		if leaf {
			return invalid(key, "content never appears in a leaf, only commitments")
		}
		m, err := valueMap(key, val, lim.MaxContentFields, lim.MaxContentBytes)
		if err != nil {
			return err
		}
		r.Content = m
	case "commitments", "seq", "source", "schema_version":
		if !leaf {
			return invalid(key, "is set by the server")
		}
		return r.setLeafField(key, val)
	default:
		return invalid(key, "unknown field")
	}
	return nil
}

// memberPath names a member of an attributes, content or commitments map,
// whose names contain dots: attributes["gen_ai.request.model"].
func memberPath(field, name string) string { return field + "[" + strconv.Quote(name) + "]" }

func (r *Record) setLeafField(key string, val []byte) error {
	switch key {
	case "commitments":
		m, err := valueMap(key, val, 1<<16, 128)
		if err != nil {
			return err
		}
		r.Commitments = make(map[string]string, len(m))
		for k, v := range m {
			s, err := stringField(memberPath(key, k), v, 128)
			if err != nil {
				return err
			}
			if !validCommitment(s) {
				return invalid(memberPath(key, k), "want sha256:<64 lowercase hex digits>")
			}
			r.Commitments[k] = s
		}
	case "seq":
		n, err := strconv.ParseInt(string(val), 10, 64)
		if err != nil || n < 0 {
			return invalid(key, "want a non-negative integer")
		}
		r.Seq = n
	case "schema_version":
		if string(val) != strconv.Itoa(SchemaVersion) {
			return invalid(key, "%s is not a schema version this program knows (want %d)", val, SchemaVersion)
		}
	case "source":
		s, err := textField(key, val, 64)
		if err != nil {
			return err
		}
		r.Source = s
	}
	return nil
}

func (r *Record) setActor(val []byte, lim Limits) error {
	if val[0] != '{' {
		return invalid("actor", "want an object")
	}
	for k, v := range objectMembers(val) {
		var dst *string
		switch k {
		case "id":
			dst = &r.Actor.ID
		case "type":
			dst = &r.Actor.Type
		case "on_behalf_of":
			dst = &r.Actor.OnBehalfOf
		case "workload":
			dst = &r.Actor.Workload
		case "credential_fingerprint":
			dst = &r.Actor.CredentialFingerprint
		default:
			return invalid("actor."+k, "unknown field (want id, type, on_behalf_of, workload, credential_fingerprint)")
		}
		s, err := textField("actor."+k, v, lim.MaxStringBytes)
		if err != nil {
			return err
		}
		*dst = s
	}
	return nil
}

func (r *Record) setLinks(val []byte, lim Limits) error {
	if val[0] != '[' {
		return invalid("links", "want an array of {\"rel\":…,\"id\":…}")
	}
	for i, el := range arrayElements(val) {
		field := fmt.Sprintf("links[%d]", i)
		if i >= lim.MaxLinks {
			return tooLarge("links", "more than %d links", lim.MaxLinks)
		}
		if el[0] != '{' {
			return invalid(field, "want an object {\"rel\":…,\"id\":…}")
		}
		var l Link
		var haveRel, haveID bool
		for k, v := range objectMembers(el) {
			switch k {
			case "rel":
				s, err := stringField(field+".rel", v, 64)
				if err != nil {
					return err
				}
				if !validRel(s) {
					return invalid(field+".rel", "%q: want a lowercase token such as answers or governs", s)
				}
				l.Rel, haveRel = s, true
			case "id":
				s, err := stringField(field+".id", v, 64)
				if err != nil {
					return err
				}
				u, err := ParseUUID(s)
				if err != nil {
					return invalid(field+".id", "%q is not a UUID", s)
				}
				l.ID, haveID = u, true
			default:
				return invalid(field+"."+k, "unknown field (want rel, id)")
			}
		}
		if !haveRel || !haveID {
			return invalid(field, "want both rel and id")
		}
		r.Links = append(r.Links, l)
	}
	return nil
}

// valueMap splits a canonical object into its members' canonical values.
func valueMap(field string, val []byte, maxN, maxBytes int) (map[string]json.RawMessage, error) {
	if val[0] != '{' {
		return nil, invalid(field, "want an object")
	}
	m := make(map[string]json.RawMessage)
	for k, v := range objectMembers(val) {
		if len(m) >= maxN {
			return nil, tooLarge(field, "more than %d members", maxN)
		}
		if k == "" || len(k) > 256 || hasControl(k) {
			return nil, invalid(memberPath(field, k), "a name must be 1 to 256 bytes without control characters")
		}
		if len(v) > maxBytes {
			return nil, tooLarge(memberPath(field, k), "value is %d bytes, the limit is %d", len(v), maxBytes)
		}
		m[k] = json.RawMessage(v)
	}
	return m, nil
}

func stringField(field string, val []byte, max int) (string, error) {
	if val[0] != '"' {
		return "", invalid(field, "want a string")
	}
	s := decodeString(val)
	if len(s) > max {
		return "", tooLarge(field, "%d bytes, the limit is %d", len(s), max)
	}
	return s, nil
}

// textField is a non-empty string without control characters.
func textField(field string, val []byte, max int) (string, error) {
	s, err := stringField(field, val, max)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", invalid(field, "empty; leave it out instead")
	}
	if hasControl(s) {
		return "", invalid(field, "contains a control character")
	}
	return s, nil
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || !strictRFC3339(s) {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time such as 2026-11-26T10:00:00.123456Z", s)
	}
	if y := t.UTC().Year(); y < 1970 || y > 9999 {
		return time.Time{}, fmt.Errorf("%q is outside the years 1970 to 9999", s)
	}
	return t.UTC(), nil
}

// strictRFC3339 reports whether s has exactly the RFC 3339 date-time form:
// YYYY-MM-DDTHH:MM:SS, an optional fraction of 1 to 9 digits after '.', and
// Z or ±HH:MM with an hour offset below 24. (time.Parse also takes a comma
// before the fraction and a +24:00 offset.)
func strictRFC3339(s string) bool {
	digits := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		}
		return true
	}
	if len(s) < 20 || !digits(s[0:4]) || s[4] != '-' || !digits(s[5:7]) || s[7] != '-' || !digits(s[8:10]) ||
		(s[10] != 'T' && s[10] != 't') || !digits(s[11:13]) || s[13] != ':' || !digits(s[14:16]) || s[16] != ':' || !digits(s[17:19]) {
		return false
	}
	rest := s[19:]
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 {
			return false
		}
		rest = rest[n:]
	}
	switch {
	case rest == "Z" || rest == "z":
		return true
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && digits(rest[1:3]) && rest[3] == ':' && digits(rest[4:6]):
		return rest[1:3] < "24" && rest[4:6] < "60"
	}
	return false
}

// FormatTime formats t as records carry times: RFC 3339 in UTC, with as
// many fractional digits as needed up to nanoseconds.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func validTenant(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// ValidTenant reports whether s is a well-formed tenant name.
func ValidTenant(s string) bool { return validTenant(s) }

func validHexID(s string, n int) bool {
	if len(s) != n || strings.Trim(s, "0") == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func validRel(s string) bool {
	if s == "" || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func validCommitment(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Commitment returns the leaf's commitment to a content value: "sha256:"
// and the lowercase hex of SHA-256(salt || value), value being the field's
// canonical JSON.
func Commitment(salt []byte, value []byte) string {
	h := sha256.New()
	h.Write(salt)
	h.Write(value)
	var sum [32]byte
	return "sha256:" + hex.EncodeToString(h.Sum(sum[:0]))
}

// Validate checks a record built in Go (not parsed) and puts its attribute
// and content values in canonical form. Capture adapters call it before
// appending.
func (r *Record) Validate(lim Limits) error {
	lim = lim.withDefaults()
	if !r.Kind.Valid() {
		return invalid("kind", "%q is not a record kind; want one of %s", r.Kind, kindList())
	}
	if r.Tenant != "" && !validTenant(r.Tenant) {
		return invalid("tenant", "%q: want 1 to 128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit", r.Tenant)
	}
	for _, f := range []struct {
		name string
		val  string
		n    int
	}{{"trace_id", r.TraceID, 32}, {"span_id", r.SpanID, 16}, {"parent_span_id", r.ParentSpanID, 16}} {
		if f.val != "" && !validHexID(f.val, f.n) {
			return invalid(f.name, "%q: want %d lowercase hex digits, not all zero", f.val, f.n)
		}
	}
	for _, f := range []struct{ name, val string }{
		{"session_id", r.SessionID}, {"actor.id", r.Actor.ID}, {"actor.type", r.Actor.Type},
		{"actor.on_behalf_of", r.Actor.OnBehalfOf}, {"actor.workload", r.Actor.Workload},
		{"actor.credential_fingerprint", r.Actor.CredentialFingerprint},
	} {
		if len(f.val) > lim.MaxStringBytes {
			return tooLarge(f.name, "%d bytes, the limit is %d", len(f.val), lim.MaxStringBytes)
		}
		if hasControl(f.val) || !utf8.ValidString(f.val) {
			return invalid(f.name, "contains a control character or invalid UTF-8")
		}
	}
	if len(r.Links) > lim.MaxLinks {
		return tooLarge("links", "more than %d links", lim.MaxLinks)
	}
	for i, l := range r.Links {
		if !validRel(l.Rel) {
			return invalid(fmt.Sprintf("links[%d].rel", i), "%q: want a lowercase token", l.Rel)
		}
		if l.ID.IsZero() {
			return invalid(fmt.Sprintf("links[%d].id", i), "missing")
		}
	}
	canon := func(field string, m map[string]json.RawMessage, maxN, maxBytes int) error {
		if len(m) > maxN {
			return tooLarge(field, "more than %d members", maxN)
		}
		for k, v := range m {
			if k == "" || len(k) > 256 || hasControl(k) || !utf8.ValidString(k) {
				return invalid(memberPath(field, k), "a name must be 1 to 256 bytes of UTF-8 without control characters")
			}
			c, err := canonicalValue(v)
			if err != nil {
				return invalid(memberPath(field, k), "%v", err)
			}
			if len(c) > maxBytes {
				return tooLarge(memberPath(field, k), "value is %d bytes, the limit is %d", len(c), maxBytes)
			}
			m[k] = c
		}
		return nil
	}
	if err := canon("attributes", r.Attributes, lim.MaxAttributes, lim.MaxAttributeBytes); err != nil {
		return err
	}
	return canon("content", r.Content, lim.MaxContentFields, lim.MaxContentBytes)
}

// AppendLeaf appends the record's canonical leaf: its envelope as RFC 8785
// JSON, with Commitments in place of Content.
func (r *Record) AppendLeaf(dst []byte) []byte {
	dst = r.AppendLeafPrefix(dst)
	dst = strconv.AppendInt(dst, r.Seq, 10)
	return r.AppendLeafSuffix(dst)
}

// appendMember appends the actor as the envelope's first member,
// `"actor":{…},`, its members in RFC 8785 order and empty ones left out;
// nothing for an empty actor.
func (a *Actor) appendMember(dst []byte) []byte {
	if *a == (Actor{}) {
		return dst
	}
	dst = append(dst, `"actor":{`...)
	sep := false
	for _, f := range [...]struct{ k, v string }{
		{"credential_fingerprint", a.CredentialFingerprint}, {"id", a.ID},
		{"on_behalf_of", a.OnBehalfOf}, {"type", a.Type}, {"workload", a.Workload},
	} {
		if f.v == "" {
			continue
		}
		if sep {
			dst = append(dst, ',')
		}
		sep = true
		dst = AppendString(dst, f.k)
		dst = append(dst, ':')
		dst = AppendString(dst, f.v)
	}
	return append(dst, "},"...)
}

// appendLinks appends the envelope's `,"links":[…]` member, each link's
// members in RFC 8785 order; nothing when there is no link.
func appendLinks(dst []byte, links []Link) []byte {
	if len(links) == 0 {
		return dst
	}
	dst = append(dst, `,"links":[`...)
	for i, l := range links {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"id":"`...)
		dst = append(dst, l.ID.String()...)
		dst = append(dst, `","rel":`...)
		dst = AppendString(dst, l.Rel)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// AppendLeafPrefix appends the leaf up to and including `"seq":`, so that a
// sequencer can prepare leaves before it knows their sequence numbers:
// leaf = prefix + decimal seq + suffix.
func (r *Record) AppendLeafPrefix(dst []byte) []byte {
	// Members in RFC 8785 order; every name is ASCII, so byte order is UTF-16 order.
	dst = append(dst, '{')
	dst = r.Actor.appendMember(dst)
	if len(r.Attributes) > 0 {
		dst = append(dst, `"attributes":`...)
		dst = appendRawMap(dst, r.Attributes)
		dst = append(dst, ',')
	}
	if len(r.Commitments) > 0 {
		dst = append(dst, `"commitments":{`...)
		for i, k := range sortedKeys(r.Commitments) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendString(dst, k)
			dst = append(dst, ':')
			dst = AppendString(dst, r.Commitments[k])
		}
		dst = append(dst, "},"...)
	}
	dst = append(dst, `"id":"`...)
	var id [36]byte
	r.ID.encode(id[:])
	dst = append(dst, id[:]...)
	dst = append(dst, `","kind":`...)
	dst = AppendString(dst, string(r.Kind))
	dst = appendLinks(dst, r.Links)
	if r.ParentSpanID != "" {
		dst = append(dst, `,"parent_span_id":`...)
		dst = AppendString(dst, r.ParentSpanID)
	}
	dst = append(dst, `,"received_time":`...)
	dst = AppendString(dst, FormatTime(r.ReceivedTime))
	dst = append(dst, `,"schema_version":`...)
	dst = strconv.AppendInt(dst, SchemaVersion, 10)
	return append(dst, `,"seq":`...)
}

// AppendLeafSuffix appends the leaf after the sequence number.
func (r *Record) AppendLeafSuffix(dst []byte) []byte {
	if r.SessionID != "" {
		dst = append(dst, `,"session_id":`...)
		dst = AppendString(dst, r.SessionID)
	}
	dst = append(dst, `,"source":`...)
	dst = AppendString(dst, r.Source)
	if r.SpanID != "" {
		dst = append(dst, `,"span_id":`...)
		dst = AppendString(dst, r.SpanID)
	}
	dst = append(dst, `,"tenant":`...)
	dst = AppendString(dst, r.Tenant)
	dst = append(dst, `,"time":`...)
	dst = AppendString(dst, FormatTime(r.Time))
	if r.TraceID != "" {
		dst = append(dst, `,"trace_id":`...)
		dst = AppendString(dst, r.TraceID)
	}
	return append(dst, '}')
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, CompareKeys)
	return keys
}

// appendRawMap appends a map of canonical values as a canonical object.
func appendRawMap(dst []byte, m map[string]json.RawMessage) []byte {
	dst = append(dst, '{')
	for i, k := range sortedKeys(m) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, k)
		dst = append(dst, ':')
		dst = append(dst, m[k]...)
	}
	return append(dst, '}')
}
