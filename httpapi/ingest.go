package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"sync"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/redact"
)

var errUnsupportedMedia = errors.New("unsupported media type")

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// ingest appends a batch of records: a JSON array (or one object) as
// application/json, or one record per line as application/x-ndjson. It
// answers only once every record is durable; one bad record rejects the
// whole batch and nothing of it is stored.
func (s *Server) ingest(w http.ResponseWriter, r *http.Request) {
	received := s.cfg.Now().UTC()
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" && mt != "application/x-ndjson" {
		s.writeError(w, r, fmt.Errorf("Content-Type %q: want application/json or application/x-ndjson: %w",
			r.Header.Get("Content-Type"), errUnsupportedMedia))
		return
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 4<<20 {
			bodyPool.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)); err != nil {
		var mbe *http.MaxBytesError
		if !errors.As(err, &mbe) {
			err = fmt.Errorf("read body: %w: %w", infertrail.ErrInvalid, err)
		}
		s.writeError(w, r, err)
		return
	}
	recs, raws, err := s.parseBatch(buf.Bytes(), mt == "application/x-ndjson")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(recs) == 0 {
		s.writeError(w, r, &infertrail.FieldError{Record: -1, Field: "(body)", Reason: "no records", Err: infertrail.ErrInvalid})
		return
	}
	subs := make([]ledger.Submission, len(recs))
	p := principal(r)
	for i, rec := range recs {
		if rec.Tenant == "" {
			rec.Tenant = ownTenant(r)
		} else if !p.Reaches(rec.Tenant) {
			s.writeError(w, r, &infertrail.FieldError{Record: i, Field: "tenant",
				Reason: fmt.Sprintf("%q: this caller writes to tenant %q only", rec.Tenant, p.Tenant), Err: infertrail.ErrForbidden})
			return
		}
		for _, a := range []string{redact.ProfileAttribute, redact.FindingsAttribute} {
			if _, ok := rec.Attributes[a]; ok {
				s.writeError(w, r, &infertrail.FieldError{Record: i, Field: fmt.Sprintf("attributes[%q]", a),
					Reason: "reserved: the server sets it", Err: infertrail.ErrInvalid})
				return
			}
		}
		rec.ReceivedTime = received
		rec.Source = "ingest"
		subs[i] = ledger.Submission{Record: rec, Raw: raws[i]}
	}
	results, err := s.log.Append(r.Context(), subs)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.m != nil {
		s.m.ingested.Add(float64(len(results)))
	}
	out := make([]byte, 0, 16+len(results)*80)
	out = append(out, `{"records":[`...)
	for i, res := range results {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"seq":`...)
		out = strconv.AppendInt(out, res.Seq, 10)
		out = append(out, `,"id":"`...)
		out = append(out, res.ID.String()...)
		if res.Duplicate {
			out = append(out, `","status":"duplicate"}`...)
		} else {
			out = append(out, `","status":"appended"}`...)
		}
	}
	out = append(out, "]}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

func (s *Server) parseBatch(body []byte, ndjson bool) ([]*infertrail.Record, [][]byte, error) {
	if !ndjson {
		trimmed := bytes.TrimLeft(body, " \t\r\n")
		if len(trimmed) > 0 && trimmed[0] == '{' {
			rec, raw, err := infertrail.ParseRecord(body, s.cfg.Limits)
			if err != nil {
				return nil, nil, atRecord(err, 0)
			}
			return []*infertrail.Record{rec}, [][]byte{raw}, nil
		}
		if n := countTopLevel(trimmed); n > s.cfg.MaxBatch {
			return nil, nil, tooMany(n, s.cfg.MaxBatch)
		}
		return infertrail.ParseRecords(body, s.cfg.Limits)
	}
	var recs []*infertrail.Record
	var raws [][]byte
	for i := 0; len(body) > 0; i++ {
		line := body
		if j := bytes.IndexByte(body, '\n'); j >= 0 {
			line, body = body[:j], body[j+1:]
		} else {
			body = nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if len(recs) >= s.cfg.MaxBatch {
			return nil, nil, tooMany(len(recs)+1+bytes.Count(body, []byte{'\n'}), s.cfg.MaxBatch)
		}
		rec, raw, err := infertrail.ParseRecord(line, s.cfg.Limits)
		if err != nil {
			return nil, nil, atRecord(err, len(recs))
		}
		recs = append(recs, rec)
		raws = append(raws, raw)
	}
	return recs, raws, nil
}

func tooMany(n, limit int) error {
	return &infertrail.FieldError{Record: -1, Field: "(body)",
		Reason: fmt.Sprintf("about %d records in one request; the limit is %d", n, limit), Err: infertrail.ErrTooLarge}
}

func atRecord(err error, i int) error {
	var fe *infertrail.FieldError
	if errors.As(err, &fe) {
		fe.Record = i
		return fe
	}
	return &infertrail.FieldError{Record: i, Field: "(record)", Reason: err.Error(), Err: infertrail.ErrInvalid}
}

// countTopLevel counts the elements of a JSON array cheaply, to refuse an
// oversized batch before parsing it. It may overcount malformed input, which
// the parser then rejects anyway.
func countTopLevel(b []byte) int {
	if len(b) == 0 || b[0] != '[' {
		return 0
	}
	depth, n, any := 0, 0, false
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			if depth == 1 {
				any = true
			}
			// Skip the string: to the next quote not escaped, found with
			// IndexByte (strings are most of a batch's bytes).
			for {
				k := bytes.IndexByte(b[i+1:], '"')
				if k < 0 {
					i = len(b)
					break
				}
				i += 1 + k
				bs := 0
				for j := i - 1; b[j] == '\\'; j-- {
					bs++
				}
				if bs%2 == 0 {
					break
				}
			}
		case '[', '{':
			if depth == 1 {
				any = true
			}
			depth++
		case ']', '}':
			depth--
		case ',':
			if depth == 1 {
				n++
			}
		case ' ', '\t', '\r', '\n':
		default:
			if depth == 1 {
				any = true
			}
		}
	}
	if any {
		n++
	}
	return n
}
