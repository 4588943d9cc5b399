package web

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/httpapi"
	"github.com/infertrail/infertrail/investigate"
)

// headerReason is the API's header for why content is read
// (httpapi.HeaderReason; the UI asks for it in a form).
const headerReason = "X-InferTrail-Reason"

// maxReason bounds a reason, as the API does.
const maxReason = 1024

// searchFields are the search form's filters, in the order shown: the
// query parameters of GET /v1/records.
var searchFields = []struct{ Name, Label, Hint string }{
	{"trace", "Trace ID", ""},
	{"session", "Session ID", ""},
	{"actor", "Actor", "such as agent:payments-bot"},
	{"model", "Model", ""},
	{"tool", "Tool", ""},
	{"decision", "Policy decision", "such as deny or require_approval"},
	{"tenant", "Tenant", "leave empty for your own"},
}

// view is what a page template renders.
type view struct {
	Title  string
	Error  string
	Status int
	// Session.
	CSRF, User, Tenant, Roles     string
	SignIn, CanContent, CanExport bool
	// Provider names the OIDC provider of "Sign in with …", if any.
	Provider string
	// Refresh, if set, is the page (a path under /ui/) the browser moves
	// on to at once (after an OIDC sign-in, or a link from another site).
	Refresh string

	Search   *searchView
	Timeline *timelineView
	Record   *recordView
	Findings *findingsView
	Log      *logView
}

type searchView struct {
	Fields    []fieldView
	Kinds     []string
	Kind      string
	Detectors []string
	Finding   string
	From, To  string
	Q, Reason string
	Rows      []resultRow
	Next      string
	Indexed   int64
}

type fieldView struct{ Name, Label, Hint, Value string }

type resultRow struct {
	Seq                          int64
	Kind, Tenant, Time           string
	Trace, Session, Actor, Label string
}

type timelineView struct {
	Kind, ID string // traces or sessions, and the id
	Tenant   string // the ?tenant= the page was asked for, if any
	T        *investigate.Timeline
}

type recordView struct {
	Seq       int64
	ID        string
	LeafHash  string
	Leaf      string
	Trace     string
	Session   string
	Proof     string // verified, failed or pending
	ProofNote string
	TreeSize  int64
	Content   []contentField
	Revealed  bool
	ErasedBy  *int64
	Reason    string
}

type contentField struct{ Field, Value string }

type findingsView struct {
	Detectors []string
	Detector  string
	Rows      []findingRow
	Next      string
}

type findingRow struct {
	Detector, Severity, Tenant, Summary, Time string
	SubjectKind, SubjectID                    string // traces or sessions; empty when the subject is neither
	Subject                                   string
	Records                                   []int64
}

type logView struct {
	Origin      string
	VerifierKey string
	TreeSize    int64
	CPSize      int64
	CPRoot      string
	Checkpoint  string
	Recent      []checkpointRow
}

type checkpointRow struct {
	Size int64
	Root string
}

// uiTime parses a time from the search form: RFC 3339, or the
// browser's date-time input (read as UTC).
func uiTime(name, v string) (string, error) {
	if _, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return v, nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return t.Format(time.RFC3339), nil
		}
	}
	return "", &apiError{Status: http.StatusBadRequest, Code: "invalid", Message: fmt.Sprintf("%s: %q is not a time such as 2026-11-27T10:00 (UTC)", name, v)}
}

// search renders the search form and the records GET /v1/records
// answers: the latest ones until the form is sent.
func (h *Handler) search(w http.ResponseWriter, r *http.Request, u signedIn) (string, view, error) {
	in := r.URL.Query()
	sv := &searchView{Kind: in.Get("kind"), Finding: in.Get("finding"), From: in.Get("from"), To: in.Get("to"),
		Q: in.Get("q"), Reason: in.Get("reason"), Detectors: investigate.Detectors}
	for _, k := range infertrail.Kinds {
		sv.Kinds = append(sv.Kinds, string(k))
	}
	q := url.Values{"limit": {"50"}}
	for _, f := range searchFields {
		v := strings.TrimSpace(in.Get(f.Name))
		sv.Fields = append(sv.Fields, fieldView{f.Name, f.Label, f.Hint, v})
		if v != "" {
			q.Set(f.Name, v)
		}
	}
	for _, name := range []string{"kind", "finding", "q", "cursor"} {
		if v := strings.TrimSpace(in.Get(name)); v != "" {
			q.Set(name, v)
		}
	}
	v := view{Title: "Search", Search: sv}
	for _, name := range []string{"from", "to"} {
		if t := strings.TrimSpace(in.Get(name)); t != "" {
			rt, err := uiTime(name, t)
			if err != nil {
				return "", v, err
			}
			q.Set(name, rt)
		}
	}
	header := http.Header{}
	if reason := strings.TrimSpace(sv.Reason); reason != "" && sv.Q != "" {
		header.Set(headerReason, reason)
	}
	var resp struct {
		Records []struct {
			Seq    int64           `json:"seq"`
			Kind   string          `json:"kind"`
			Tenant string          `json:"tenant"`
			Time   string          `json:"time"`
			Record json.RawMessage `json:"record"`
		} `json:"records"`
		NextCursor     string `json:"next_cursor"`
		IndexedThrough int64  `json:"indexed_through"`
	}
	if err := h.getJSON(r, u, "/v1/records", q, header, &resp); err != nil {
		return "", v, err
	}
	sv.Indexed = resp.IndexedThrough
	for _, it := range resp.Records {
		row := resultRow{Seq: it.Seq, Kind: it.Kind, Tenant: it.Tenant, Time: it.Time}
		if rec, err := infertrail.ParseLeaf(it.Record); err == nil {
			row.Trace, row.Session, row.Actor = rec.TraceID, rec.SessionID, rec.Actor.ID
			row.Label = labelOf(rec)
		}
		sv.Rows = append(sv.Rows, row)
	}
	if resp.NextCursor != "" {
		next := url.Values{}
		for k, vs := range in {
			next[k] = vs
		}
		next.Set("cursor", resp.NextCursor)
		next.Set("go", "1")
		sv.Next = "/ui/search?" + next.Encode()
	}
	return "search", v, nil
}

// labelOf names what a record is about in a results table.
func labelOf(rec *infertrail.Record) string {
	var parts []string
	for _, a := range []string{"gen_ai.request.model", "gen_ai.response.model", "gen_ai.tool.name", "policy.result", "url.full", "access.action"} {
		var s string
		if json.Unmarshal(rec.Attributes[a], &s) == nil && s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, " · ")
}

// timeline renders a trace or a session as GET /v1/traces/{id} or
// /v1/sessions/{id} answers it.
func (h *Handler) timeline(kind string) func(http.ResponseWriter, *http.Request, signedIn) (string, view, error) {
	return func(w http.ResponseWriter, r *http.Request, u signedIn) (string, view, error) {
		id := r.PathValue("id")
		tv := &timelineView{Kind: kind, ID: id}
		v := view{Title: strings.TrimSuffix(kind, "s") + " " + id, Timeline: tv}
		q := url.Values{}
		if t := r.URL.Query().Get("tenant"); t != "" {
			q.Set("tenant", t)
			tv.Tenant = t
		}
		var t investigate.Timeline
		if err := h.getJSON(r, u, "/v1/"+kind+"/"+url.PathEscape(id), q, nil, &t); err != nil {
			return "", v, err
		}
		tv.T = &t
		return "timeline", v, nil
	}
}

// seqOf reads the {seq} of a record page.
func seqOf(r *http.Request) (int64, error) {
	v := r.PathValue("seq")
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != v {
		return 0, &apiError{Status: http.StatusBadRequest, Code: "invalid", Message: fmt.Sprintf("seq: %q is not a record number", v)}
	}
	return n, nil
}

// recordAnswer is the answer of GET /v1/records/{seq}.
type recordAnswer struct {
	Seq      int64                      `json:"seq"`
	ID       string                     `json:"id"`
	LeafHash string                     `json:"leaf_hash"`
	Record   json.RawMessage            `json:"record"`
	Content  map[string]json.RawMessage `json:"content"`
	ErasedBy *int64                     `json:"content_erased_by"`
}

// record renders one record's metadata and proof status.
func (h *Handler) record(w http.ResponseWriter, r *http.Request, u signedIn) (string, view, error) {
	rv, err := h.recordView(r, u, nil)
	return "record", view{Title: fmt.Sprintf("Record %d", rv.Seq), Record: rv}, err
}

// revealContent appends the access record of a content read, with the
// reason the form gives, and renders the record with its content.
func (h *Handler) revealContent(w http.ResponseWriter, r *http.Request, u signedIn) (string, view, error) {
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	switch {
	case reason == "":
		return "", view{}, &apiError{Status: http.StatusBadRequest, Code: "invalid", Message: "reason: required: say why you read this content (the access record keeps it)"}
	case len(reason) > maxReason:
		return "", view{}, &apiError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: fmt.Sprintf("reason: longer than %d bytes", maxReason)}
	}
	header := http.Header{}
	header.Set(headerReason, reason)
	rv, err := h.recordView(r, u, header)
	if err != nil {
		return "", view{}, err
	}
	rv.Reason = reason
	return "record", view{Title: fmt.Sprintf("Record %d", rv.Seq), Record: rv}, nil
}

// recordView reads a record (with its content when contentHeader is not
// nil: the API then records the read) and checks its inclusion proof.
func (h *Handler) recordView(r *http.Request, u signedIn, contentHeader http.Header) (*recordView, error) {
	seq, err := seqOf(r)
	if err != nil {
		return &recordView{}, err
	}
	rv := &recordView{Seq: seq}
	q := url.Values{}
	if contentHeader != nil {
		q.Set("content", "true")
	}
	var a recordAnswer
	if err := h.getJSON(r, u, "/v1/records/"+strconv.FormatInt(seq, 10), q, contentHeader, &a); err != nil {
		return rv, err
	}
	rv.ID, rv.LeafHash, rv.Leaf = a.ID, a.LeafHash, pretty(a.Record)
	if rec, err := infertrail.ParseLeaf(a.Record); err == nil {
		rv.Trace, rv.Session = rec.TraceID, rec.SessionID
	}
	if contentHeader != nil {
		rv.Revealed, rv.ErasedBy = true, a.ErasedBy
		fields := make([]string, 0, len(a.Content))
		for f := range a.Content {
			fields = append(fields, f)
		}
		slices.Sort(fields)
		for _, f := range fields {
			rv.Content = append(rv.Content, contentField{f, pretty(a.Content[f])})
		}
	}
	rv.Proof, rv.ProofNote, rv.TreeSize = h.proofStatus(r, u, seq, a.Record)
	return rv, nil
}

// proofStatus checks the record's inclusion proof against the checkpoint
// the API proves it to, from the leaf as the store holds it now.
func (h *Handler) proofStatus(r *http.Request, u signedIn, seq int64, leaf []byte) (status, note string, size int64) {
	var p struct {
		TreeSize   int64    `json:"tree_size"`
		Proof      []string `json:"proof"`
		Checkpoint string   `json:"checkpoint"`
	}
	if err := h.getJSON(r, u, "/v1/records/"+strconv.FormatInt(seq, 10)+"/proof", nil, nil, &p); err != nil {
		return investigate.Pending, "no inclusion proof yet: " + err.Error(), 0
	}
	root, err := checkpointRoot(p.Checkpoint)
	if err != nil {
		return investigate.Failed, "the checkpoint cannot be read: " + err.Error(), p.TreeSize
	}
	proof := make(tlog.RecordProof, len(p.Proof))
	for i, s := range p.Proof {
		if proof[i], err = tlog.ParseHash(s); err != nil {
			return investigate.Failed, "the proof cannot be read: " + err.Error(), p.TreeSize
		}
	}
	if err := tlog.CheckRecord(proof, p.TreeSize, root, seq, tlog.RecordHash(leaf)); err != nil {
		return investigate.Failed, fmt.Sprintf("the record as stored is not the one the signed checkpoint of size %d commits to: %v", p.TreeSize, err), p.TreeSize
	}
	return investigate.Verified, fmt.Sprintf("included in the signed checkpoint of size %d", p.TreeSize), p.TreeSize
}

// checkpointRoot reads the root hash of a checkpoint note (origin, size,
// root hash, then the signatures).
func checkpointRoot(text string) (tlog.Hash, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return tlog.Hash{}, errors.New("too short")
	}
	return tlog.ParseHash(lines[2])
}

// pretty indents JSON for people.
func pretty(b []byte) string {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return string(b)
	}
	return out.String()
}

// findings renders GET /v1/findings.
func (h *Handler) findings(w http.ResponseWriter, r *http.Request, u signedIn) (string, view, error) {
	in := r.URL.Query()
	fv := &findingsView{Detectors: investigate.Detectors, Detector: in.Get("detector")}
	v := view{Title: "Findings", Findings: fv}
	q := url.Values{"limit": {"50"}}
	for _, name := range []string{"detector", "cursor", "tenant"} {
		if s := in.Get(name); s != "" {
			q.Set(name, s)
		}
	}
	var resp httpapi.FindingsPage
	if err := h.getJSON(r, u, "/v1/findings", q, nil, &resp); err != nil {
		return "", v, err
	}
	for _, f := range resp.Findings {
		row := findingRow{Detector: f.Detector, Severity: string(f.Severity), Tenant: f.Tenant, Summary: f.Summary, Time: f.Time,
			Subject: f.Subject, Records: f.Records}
		switch field, id, _ := infertrail.SplitIndexKey(f.Subject); field {
		case infertrail.IndexTrace:
			row.SubjectKind, row.SubjectID = "traces", id
		case infertrail.IndexSession:
			row.SubjectKind, row.SubjectID = "sessions", id
		}
		fv.Rows = append(fv.Rows, row)
	}
	if resp.NextCursor != "" {
		next := url.Values{"cursor": {resp.NextCursor}}
		if fv.Detector != "" {
			next.Set("detector", fv.Detector)
		}
		fv.Next = "/ui/findings?" + next.Encode()
	}
	return "findings", v, nil
}

// logStatus renders GET /v1/log, the latest checkpoint, and the recent
// ones.
func (h *Handler) logStatus(w http.ResponseWriter, r *http.Request, u signedIn) (string, view, error) {
	lv := &logView{}
	v := view{Title: "Log status", Log: lv}
	var info struct {
		Origin      string `json:"origin"`
		VerifierKey string `json:"verifier_key"`
		TreeSize    int64  `json:"tree_size"`
		Checkpoint  *struct {
			Size int64  `json:"size"`
			Root string `json:"root"`
		} `json:"checkpoint"`
	}
	if err := h.getJSON(r, u, "/v1/log", nil, nil, &info); err != nil {
		return "", v, err
	}
	lv.Origin, lv.VerifierKey, lv.TreeSize = info.Origin, info.VerifierKey, info.TreeSize
	if info.Checkpoint != nil {
		lv.CPSize, lv.CPRoot = info.Checkpoint.Size, info.Checkpoint.Root
	}
	if note, err := h.call(r, u, http.MethodGet, "/checkpoint", nil, nil); err == nil {
		lv.Checkpoint = string(note)
	}
	if h.cfg.Log != nil { // the caller may read the log: /v1/log answered
		const recent = 10
		err := h.cfg.Log.Store().Checkpoints(r.Context(), max(0, lv.CPSize-5000), func(c infertrail.StoredCheckpoint) error {
			row := checkpointRow{Size: c.Size}
			if root, err := checkpointRoot(string(c.Note)); err == nil {
				row.Root = base64.StdEncoding.EncodeToString(root[:])
			}
			lv.Recent = append(lv.Recent, row)
			if len(lv.Recent) > recent {
				lv.Recent = lv.Recent[1:]
			}
			return nil
		})
		if err != nil {
			return "", v, fmt.Errorf("read checkpoints: %w", err)
		}
		slices.Reverse(lv.Recent)
	}
	return "log", v, nil
}

// export streams the evidence bundle of a trace or a session, as GET
// /v1/export makes and records it.
func (h *Handler) export(w http.ResponseWriter, r *http.Request, u signedIn) (string, view, error) {
	kind, id := r.PostFormValue("kind"), r.PostFormValue("id")
	if id == "" || (kind != "trace" && kind != "session") {
		return "", view{}, &apiError{Status: http.StatusBadRequest, Code: "invalid", Message: "say what to export: a trace or a session"}
	}
	q := url.Values{kind: {id}}
	if t := r.PostFormValue("tenant"); t != "" {
		q.Set("tenant", t)
	}
	if err := h.stream(w, r, u, "/v1/export", q, nil); err != nil {
		return "", view{}, err
	}
	return "", view{}, nil
}
