package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/investigate"
)

func invalidParam(name, format string, args ...any) error {
	return &infertrail.FieldError{Record: -1, Field: name, Reason: fmt.Sprintf(format, args...), Err: infertrail.ErrInvalid}
}

// knownParams refuses a query parameter that is not among known, naming it.
func knownParams(v url.Values, known ...string) error {
	for name := range v {
		if !slices.Contains(known, name) {
			return invalidParam(name, "unknown parameter (known: %s)", strings.Join(known, ", "))
		}
	}
	return nil
}

// tenantsOf returns the tenants a read may see: the caller's own, or with
// ?tenant= one the caller reaches; nil (every tenant) for a caller that
// reaches every tenant and names none.
func tenantsOf(r *http.Request) ([]string, error) {
	p := principal(r)
	if t := r.URL.Query().Get("tenant"); t != "" {
		if err := reachTenant(r, "tenant", t); err != nil {
			return nil, err
		}
		return []string{t}, nil
	}
	if p.Tenant == infertrail.AllTenants {
		return nil, nil
	}
	return []string{p.Tenant}, nil
}

// engine returns the investigation engine, or an error when the server
// runs without one.
func (s *Server) engine() (*investigate.Engine, error) {
	if s.cfg.Investigate == nil {
		return nil, fmt.Errorf("investigation is not configured on this server: %w", infertrail.ErrUnavailable)
	}
	return s.cfg.Investigate, nil
}

// parseTime parses an RFC 3339 query parameter.
func parseTime(name, v string) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return 0, invalidParam(name, "%q is not an RFC 3339 time such as 2026-11-27T10:00:00Z", v)
	}
	return t.UnixNano(), nil
}

// filterParams are the query parameters that become index keys.
var filterParams = []struct{ param, field string }{
	{"trace", infertrail.IndexTrace}, {"session", infertrail.IndexSession}, {"actor", infertrail.IndexActor},
	{"model", infertrail.IndexModel}, {"tool", infertrail.IndexTool}, {"decision", infertrail.IndexDecision},
	{"finding", infertrail.IndexFinding}, {"tool_call", infertrail.IndexToolCall}, {"credential", infertrail.IndexCredential},
	{"link", infertrail.IndexLink},
}

// recordsQuery builds a store query from the query string. It returns the
// number of full-text words searched for (content search needs
// PermContent, and is recorded).
func (s *Server) recordsQuery(r *http.Request, e *investigate.Engine) (infertrail.Query, int, error) {
	v := r.URL.Query()
	known := []string{"tenant", "kind", "from", "to", "q", "cursor", "limit"}
	for _, f := range filterParams {
		known = append(known, f.param)
	}
	if err := knownParams(v, known...); err != nil {
		return infertrail.Query{}, 0, err
	}
	var q infertrail.Query
	var err error
	if q.Tenants, err = tenantsOf(r); err != nil {
		return q, 0, err
	}
	for _, ks := range v["kind"] {
		for k := range strings.SplitSeq(ks, ",") {
			if !infertrail.Kind(k).Valid() {
				return q, 0, invalidParam("kind", "%q is not a record kind", k)
			}
			q.Kinds = append(q.Kinds, infertrail.Kind(k))
		}
	}
	if t := v.Get("from"); t != "" {
		if q.From, err = parseTime("from", t); err != nil {
			return q, 0, err
		}
	}
	if t := v.Get("to"); t != "" {
		if q.To, err = parseTime("to", t); err != nil {
			return q, 0, err
		}
	}
	if q.From != 0 && q.To != 0 && q.To <= q.From {
		return q, 0, invalidParam("to", "must be after from")
	}
	for _, f := range filterParams {
		for _, val := range v[f.param] {
			if val == "" {
				return q, 0, invalidParam(f.param, "empty")
			}
			if f.param == "finding" && !slices.Contains(investigate.Detectors, val) {
				return q, 0, invalidParam("finding", "%q is not a detector (known: %s)", val, strings.Join(investigate.Detectors, ", "))
			}
			q.Keys = append(q.Keys, infertrail.IndexKey(f.field, val))
		}
	}
	words := 0
	if text := v.Get("q"); text != "" {
		terms := e.Terms()
		if terms == nil {
			return q, 0, invalidParam("q", "full-text search is off on this server")
		}
		keys := terms.QueryKeys(text)
		if len(keys) == 0 {
			return q, 0, invalidParam("q", "no word to search for: words are 2 to 64 letters or digits")
		}
		if len(keys) > 16 {
			return q, 0, invalidParam("q", "at most 16 words")
		}
		q.Keys = append(q.Keys, keys...)
		words = len(keys)
	}
	if q.Before, q.Limit, err = pageParams(v); err != nil {
		return q, 0, err
	}
	return q, words, nil
}

// pageParams reads ?cursor (0 when absent) and ?limit (1 to 1,000; 100
// when absent).
func pageParams(v url.Values) (cursor int64, limit int, err error) {
	if c := v.Get("cursor"); c != "" {
		if cursor, err = intParam("cursor", c); err != nil {
			return 0, 0, err
		}
	}
	limit = 100
	if l := v.Get("limit"); l != "" {
		n, err := intParam("limit", l)
		if err != nil || n < 1 || n > 1000 {
			return 0, 0, invalidParam("limit", "must be from 1 to 1000")
		}
		limit = int(n)
	}
	return cursor, limit, nil
}

// queryItem is one record of a query's answer.
type queryItem struct {
	Seq    int64           `json:"seq"`
	ID     string          `json:"id"`
	Kind   infertrail.Kind `json:"kind"`
	Tenant string          `json:"tenant"`
	Time   string          `json:"time"`
	Record json.RawMessage `json:"record"`
}

type queryResponse struct {
	Records []queryItem `json:"records"`
	// NextCursor, when set, fetches the next (older) page.
	NextCursor string `json:"next_cursor,omitempty"`
	// IndexedThrough is the number of records the index covers; filters
	// by trace, session, actor, model, tool, decision, finding or words
	// see those only.
	IndexedThrough int64 `json:"indexed_through"`
}

// catchUp brings the index up to date before a read, so that a read
// sees what was committed before it (the background indexer usually has).
// A failure that is not the store's being away or the request's end is
// errIndexBehind: the read is refused, since an index that cannot be
// written may still hold what an erasure had to delete from it.
func (s *Server) catchUp(r *http.Request, e *investigate.Engine) (int64, error) {
	n, err := e.IndexCurrent(r.Context(), 8)
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, infertrail.ErrUnavailable) {
		return n, fmt.Errorf("%w: %w", errIndexBehind, err)
	}
	return n, err
}

// errIndexBehind is the answer to a read that needs the index when the
// index cannot be brought up to date. Its cause, which may name the
// server's files, goes to the server's log.
var errIndexBehind = errors.New("the investigation index cannot be brought up to date; the server's log says why")

// records answers GET /v1/records: a filtered, paged query, newest first.
func (s *Server) records(w http.ResponseWriter, r *http.Request) {
	e, err := s.engine()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q, words, err := s.recordsQuery(r, e)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if words > 0 {
		// Searching content tells what content holds: it needs the
		// content permission, and leaves an access record (with the
		// number of words, never the words).
		if p := principal(r); !p.Can(infertrail.PermContent) {
			s.writeError(w, r, forbidden(p, infertrail.PermContent))
			return
		}
		reason, err := s.reason(r, s.cfg.RequireReason)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		attrs := map[string]json.RawMessage{"access.search.words": json.RawMessage(strconv.Itoa(words))}
		if reason != "" {
			attrs["access.reason"] = jsonString(reason)
		}
		if err := s.recordAction(r, "search", attrs); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	indexed, err := s.catchUp(r, e)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := queryResponse{Records: []queryItem{}, IndexedThrough: indexed}
	err = s.log.Store().Query(r.Context(), q, func(en *infertrail.Entry) error {
		resp.Records = append(resp.Records, queryItem{Seq: en.Seq, ID: en.ID.String(), Kind: en.Kind, Tenant: en.Tenant,
			Time: infertrail.FormatTime(time.Unix(0, en.Time)), Record: json.RawMessage(slices.Clone(en.Leaf))})
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if n := len(resp.Records); n == q.Limit && resp.Records[n-1].Seq > 0 {
		resp.NextCursor = strconv.FormatInt(resp.Records[n-1].Seq, 10)
	}
	writeJSON(w, http.StatusOK, resp)
}

// timelineOf answers GET /v1/traces/{id} and GET /v1/sessions/{id}.
func timelineOf(field string) func(*Server, http.ResponseWriter, *http.Request) {
	return func(s *Server, w http.ResponseWriter, r *http.Request) {
		e, err := s.engine()
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		tenants, err := tenantsOf(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		id := r.PathValue("id")
		if id == "" || len(id) > 1024 {
			s.writeError(w, r, invalidParam("id", "must be 1 to 1024 bytes"))
			return
		}
		if _, err := s.catchUp(r, e); err != nil {
			s.writeError(w, r, err)
			return
		}
		t, err := e.Timeline(r.Context(), infertrail.IndexKey(field, id), tenants)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, t)
	}
}

// FindingJSON is the API form of a finding.
type FindingJSON struct {
	N        int64               `json:"n"`
	ID       string              `json:"id"`
	Detector string              `json:"detector"`
	Severity infertrail.Severity `json:"severity"`
	Tenant   string              `json:"tenant"`
	Subject  string              `json:"subject"`
	Records  []int64             `json:"records"`
	Summary  string              `json:"summary"`
	Time     string              `json:"time"`
}

// FindingsPage is the answer of GET /v1/findings.
type FindingsPage struct {
	Findings []FindingJSON `json:"findings"`
	// NextCursor, when set, fetches the next (older) page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// findingOf is the API form of a finding.
func findingOf(f *infertrail.Finding) FindingJSON {
	return FindingJSON{N: f.N, ID: f.ID.String(), Detector: f.Detector, Severity: f.Severity, Tenant: f.Tenant,
		Subject: f.Subject, Records: slices.Clone(f.Records), Summary: f.Summary, Time: infertrail.FormatTime(time.Unix(0, f.Time))}
}

// findings answers GET /v1/findings.
func (s *Server) findings(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	if err := knownParams(v, "tenant", "detector", "subject", "seq", "cursor", "limit"); err != nil {
		s.writeError(w, r, err)
		return
	}
	q := infertrail.FindingQuery{Seq: -1}
	var err error
	if q.Tenants, err = tenantsOf(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, d := range v["detector"] {
		if !slices.Contains(investigate.Detectors, d) {
			s.writeError(w, r, invalidParam("detector", "%q is not a detector (known: %s)", d, strings.Join(investigate.Detectors, ", ")))
			return
		}
		q.Detectors = append(q.Detectors, d)
	}
	q.Subject = v.Get("subject")
	if sq := v.Get("seq"); sq != "" {
		if q.Seq, err = intParam("seq", sq); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if q.Before, q.Limit, err = pageParams(v); err != nil {
		s.writeError(w, r, err)
		return
	}
	out := FindingsPage{Findings: []FindingJSON{}}
	err = s.log.Store().Findings(r.Context(), q, func(f *infertrail.Finding) error {
		out.Findings = append(out.Findings, findingOf(f))
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if n := len(out.Findings); n == q.Limit && out.Findings[n-1].N > 1 {
		out.NextCursor = strconv.FormatInt(out.Findings[n-1].N, 10)
	}
	writeJSON(w, http.StatusOK, out)
}

// detect answers POST /v1/detect?trace=…|session=…[&window=…]: it runs the
// detectors over one trace or session now and stores what they find.
func (s *Server) detect(w http.ResponseWriter, r *http.Request) {
	e, err := s.engine()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	key, err := subjectParam(r.URL.Query())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var window time.Duration
	if wv := r.URL.Query().Get("window"); wv != "" {
		if window, err = time.ParseDuration(wv); err != nil || window < 0 {
			s.writeError(w, r, invalidParam("window", "%q is not a duration such as 30s or 5m", wv))
			return
		}
		if window == 0 {
			window = time.Nanosecond // judge everything now
		}
	}
	tenants, err := tenantsOf(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if _, err := s.catchUp(r, e); err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err := e.Timeline(r.Context(), key, tenants)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := struct {
		Findings []FindingJSON `json:"findings"`
	}{Findings: []FindingJSON{}}
	for _, tenant := range t.Tenants {
		fs, err := e.DetectSubject(r.Context(), tenant, key, window)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		for i := range fs {
			out.Findings = append(out.Findings, findingOf(&fs[i]))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// subjectParam reads the one trace= or session= parameter that names what
// to examine.
func subjectParam(v url.Values) (string, error) {
	tr, se := v.Get("trace"), v.Get("session")
	switch {
	case tr != "" && se != "":
		return "", invalidParam("trace", "give trace or session, not both")
	case tr != "":
		return infertrail.IndexKey(infertrail.IndexTrace, tr), nil
	case se != "":
		return infertrail.IndexKey(infertrail.IndexSession, se), nil
	}
	return "", invalidParam("trace", "give trace=ID or session=ID")
}
