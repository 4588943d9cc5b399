package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/export"
	"github.com/infertrail/infertrail/investigate"
)

// maxExportLinks bounds the reads links of an export's access record; the
// bundle's manifest lists every record.
const maxExportLinks = 64

// exportSelection is what an export asked for: its records, their
// timeline depth, and a title.
type exportSelection struct {
	seqs  []int64
	depth map[int64]int
	title string
}

// selectExport reads what GET /v1/export selects: ?seq=N,M…, or one
// ?trace= or ?session= (as its timeline), or the filters of GET
// /v1/records (every page, up to export.MaxBundleRecords).
func (s *Server) selectExport(r *http.Request) (exportSelection, error) {
	v := r.URL.Query()
	var sel exportSelection
	if sq := v.Get("seq"); sq != "" {
		for part := range strings.SplitSeq(sq, ",") {
			seq, err := intParam("seq", part)
			if err != nil {
				return sel, err
			}
			if _, err := s.entry(r, seq); err != nil {
				return sel, err
			}
			sel.seqs = append(sel.seqs, seq)
		}
		if len(sel.seqs) > export.MaxBundleRecords {
			return sel, invalidParam("seq", "at most %d records", export.MaxBundleRecords)
		}
		sel.title = "records " + sq
		return sel, nil
	}
	e, err := s.engine()
	if err != nil {
		return sel, err
	}
	if _, err := s.catchUp(r, e); err != nil {
		return sel, err
	}
	rest := len(v)
	if v.Has("content") {
		rest--
	}
	if v.Has("tenant") {
		rest--
	}
	if rest == 1 && (v.Get("trace") != "" || v.Get("session") != "") {
		key, err := subjectParam(v)
		if err != nil {
			return sel, err
		}
		tenants, err := tenantsOf(r)
		if err != nil {
			return sel, err
		}
		t, err := e.Timeline(r.Context(), key, tenants)
		if err != nil {
			return sel, err
		}
		sel.depth = map[int64]int{}
		t.Walk(func(n *investigate.Node) {
			sel.seqs = append(sel.seqs, n.Seq)
			sel.depth[n.Seq] = n.Depth
		})
		field, id, _ := infertrail.SplitIndexKey(key)
		sel.title = field + " " + id
		return sel, nil
	}
	q2 := r.Clone(r.Context())
	qv := q2.URL.Query()
	qv.Del("content")
	q2.URL.RawQuery = qv.Encode()
	q, _, err := s.recordsQuery(q2, e)
	if err != nil {
		return sel, err
	}
	if v.Get("q") != "" && !principal(r).Can(infertrail.PermContent) {
		return sel, forbidden(principal(r), infertrail.PermContent)
	}
	if len(q.Keys) == 0 && len(q.Kinds) == 0 && q.From == 0 && q.To == 0 {
		return sel, invalidParam("seq", "say what to export: seq=, trace=, session=, or the filters of GET /v1/records")
	}
	q.Limit = infertrail.MaxQueryLimit
	for {
		n := 0
		err := s.log.Store().Query(r.Context(), q, func(en *infertrail.Entry) error {
			sel.seqs = append(sel.seqs, en.Seq)
			q.Before = en.Seq
			n++
			return nil
		})
		if err != nil {
			return sel, err
		}
		if len(sel.seqs) > export.MaxBundleRecords {
			return sel, invalidParam("seq", "the query selects more than %d records: narrow it", export.MaxBundleRecords)
		}
		if n < q.Limit {
			break
		}
	}
	if len(sel.seqs) == 0 {
		return sel, fmt.Errorf("the query selects no record: %w", infertrail.ErrNotFound)
	}
	sel.title = "query " + r.URL.RawQuery
	return sel, nil
}

// exportBundle answers GET /v1/export with an evidence bundle (a zip). The
// export is recorded before the bundle is sent.
func (s *Server) exportBundle(w http.ResponseWriter, r *http.Request) {
	content := r.URL.Query().Get("content") == "true"
	if content && !principal(r).Can(infertrail.PermContent) {
		s.writeError(w, r, forbidden(principal(r), infertrail.PermContent))
		return
	}
	sel, err := s.selectExport(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	tmp, err := os.CreateTemp("", "infertrail-bundle-*.zip")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	m, err := export.WriteBundle(r.Context(), tmp, s.log, export.BundleOptions{Seqs: sel.seqs, Content: content, Title: sel.title,
		Depth: sel.depth, Exporter: actor(r).ID, VerifierKey: s.cfg.VerifierKey, Now: s.cfg.Now})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	attrs := map[string]json.RawMessage{
		"access.export.format":  jsonString("bundle"),
		"access.export.records": json.RawMessage(strconv.Itoa(len(m.Records))),
		"access.export.content": json.RawMessage(strconv.FormatBool(content)),
	}
	if reason, err := s.reason(r, content && s.cfg.RequireReason); err != nil {
		s.writeError(w, r, err)
		return
	} else if reason != "" {
		attrs["access.reason"] = jsonString(reason)
	}
	var links []infertrail.Link
	for _, mr := range m.Records {
		if len(links) == maxExportLinks {
			break
		}
		links = append(links, infertrail.Link{Rel: "reads", ID: mr.ID})
	}
	if err := s.recordActionLinks(r, "export", attrs, links); err != nil {
		s.writeError(w, r, err)
		return
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set("Content-Disposition", `attachment; filename="infertrail-bundle-`+time.Now().UTC().Format("20060102T150405Z")+`.zip"`)
	w.Header().Set("Cache-Control", "no-store")
	io.Copy(w, tmp)
}

// report answers GET /v1/report?from=…&to=…[&format=html|json]: the
// compliance report of a period, over every tenant.
func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	if err := knownParams(v, "from", "to", "format", "tenant"); err != nil {
		s.writeError(w, r, err)
		return
	}
	tenants, err := tenantsOf(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	to := s.cfg.Now()
	from := to.Add(-30 * 24 * time.Hour)
	if t := v.Get("from"); t != "" {
		ns, err := parseTime("from", t)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		from = time.Unix(0, ns)
	}
	if t := v.Get("to"); t != "" {
		ns, err := parseTime("to", t)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		to = time.Unix(0, ns)
	}
	if !to.After(from) {
		s.writeError(w, r, invalidParam("to", "must be after from"))
		return
	}
	format := v.Get("format")
	if format == "" {
		format = "json"
	}
	if format != "json" && format != "html" {
		s.writeError(w, r, invalidParam("format", "%q: want html or json", format))
		return
	}
	src := export.LogSource(s.log)
	if tenants != nil {
		src = export.ForTenants(src, tenants...)
	}
	rep, err := export.BuildReport(r.Context(), src, from, to, *s.cfg.Controls)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.recordAction(r, "report", map[string]json.RawMessage{"access.export.format": jsonString("report-" + format)}); err != nil {
		s.writeError(w, r, err)
		return
	}
	if format == "html" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		rep.WriteHTML(w)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	rep.WriteJSON(w)
}
