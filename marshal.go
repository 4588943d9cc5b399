package infertrail

import (
	"encoding/json"
	"fmt"
)

// MarshalJSON encodes the record in the native ingest format that
// ParseRecord reads (docs/records.md): id and time when set (time as
// FormatTime gives it), kind, tenant, actor, session, trace context, links,
// and the attribute and content values as they are. The fields the server
// assigns (seq, source, received_time, schema_version, commitments) are
// left out. Members come in RFC 8785 order, so a record whose values are
// canonical (one that ParseRecord or Validate returned) encodes to
// canonical JSON.
//
// It fails, with a *FieldError, only when an attribute or content value is
// not JSON; other problems are for the receiver's ParseRecord to report.
func (r *Record) MarshalJSON() ([]byte, error) {
	if r == nil {
		return []byte("null"), nil
	}
	return r.appendJSON(make([]byte, 0, r.jsonSizeHint()))
}

// jsonSizeHint estimates the encoded size, to allocate once.
func (r *Record) jsonSizeHint() int {
	n := 512 + len(r.SessionID) + len(r.Actor.ID) + len(r.Actor.Type) + len(r.Actor.OnBehalfOf) +
		len(r.Actor.Workload) + len(r.Actor.CredentialFingerprint) + 64*len(r.Links)
	for k, v := range r.Attributes {
		n += len(k) + len(v) + 4
	}
	for k, v := range r.Content {
		n += len(k) + len(v) + 4
	}
	return n
}

func (r *Record) appendJSON(dst []byte) ([]byte, error) {
	// Member names are ASCII, so byte order is RFC 8785's UTF-16 order.
	dst = append(dst, '{')
	dst = r.Actor.appendMember(dst)
	var err error
	if dst, err = appendValues(dst, "attributes", r.Attributes); err != nil {
		return nil, err
	}
	if dst, err = appendValues(dst, "content", r.Content); err != nil {
		return nil, err
	}
	if !r.ID.IsZero() {
		dst = append(dst, `"id":"`...)
		var id [36]byte
		r.ID.encode(id[:])
		dst = append(dst, id[:]...)
		dst = append(dst, `",`...)
	}
	dst = append(dst, `"kind":`...)
	dst = AppendString(dst, string(r.Kind))
	dst = appendLinks(dst, r.Links)
	for _, f := range [...]struct{ k, v string }{
		{"parent_span_id", r.ParentSpanID}, {"session_id", r.SessionID}, {"span_id", r.SpanID}, {"tenant", r.Tenant},
	} {
		if f.v != "" {
			dst = append(dst, ',')
			dst = AppendString(dst, f.k)
			dst = append(dst, ':')
			dst = AppendString(dst, f.v)
		}
	}
	if !r.Time.IsZero() {
		dst = append(dst, `,"time":`...)
		dst = AppendString(dst, FormatTime(r.Time))
	}
	if r.TraceID != "" {
		dst = append(dst, `,"trace_id":`...)
		dst = AppendString(dst, r.TraceID)
	}
	return append(dst, '}'), nil
}

// appendValues appends `"field":{…},` for a non-empty map of JSON values,
// each written as it is.
func appendValues(dst []byte, field string, m map[string]json.RawMessage) ([]byte, error) {
	if len(m) == 0 {
		return dst, nil
	}
	dst = append(dst, '"')
	dst = append(dst, field...)
	dst = append(dst, `":{`...)
	for i, k := range sortedKeys(m) {
		v := m[k]
		if !json.Valid(v) {
			return nil, invalid(memberPath(field, k), "%s", describeInvalid(v))
		}
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, k)
		dst = append(dst, ':')
		dst = append(dst, v...)
	}
	return append(dst, "},"...), nil
}

// describeInvalid says what is wrong with a value without quoting it: it
// may be content that must not reach a log.
func describeInvalid(v []byte) string {
	if len(v) == 0 {
		return "empty; want a JSON value"
	}
	return fmt.Sprintf("not a JSON value (%d bytes)", len(v))
}
