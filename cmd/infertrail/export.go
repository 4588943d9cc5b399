package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/export"
	"github.com/infertrail/infertrail/httpapi"
	"github.com/infertrail/infertrail/investigate"
	"github.com/infertrail/infertrail/ledger"
)

// exportCmd writes an evidence bundle: from a data folder directly, or
// downloaded from a server's /v1/export.
func exportCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", stderr)
	trace := fs.String("trace", "", "export the records of the trace `ID` (32 hex digits)")
	session := fs.String("session", "", "export the records of the session `ID`")
	seqList := fs.String("seq", "", "export the records with these sequence `numbers` (N[,N…])")
	content := fs.Bool("content", false, "reveal the records' content and salts; without it the bundle holds commitments only")
	out := fs.String("out", "", "write the bundle to `file` (required), such as evidence.zip")
	title := fs.String("title", "", "what the bundle is of (`text`), shown in its summary (default: the selection)")
	reason := fs.String("reason", "", "why you export (`text`), kept in the access record the export leaves")
	quiet := fs.Bool("q", false, "print no progress")
	t := addTarget(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	sel, err := parseSelection(*trace, *session, *seqList)
	if err != nil {
		return err
	}
	if *out == "" {
		return withHint(errors.New("export: --out is required"), "infertrail export --session sess-42 --out evidence.zip --data DIR")
	}
	if err := t.check(); err != nil {
		return err
	}
	if *title == "" {
		*title = sel.String()
	}
	if *t.server != "" {
		return exportFromServer(ctx, t, sel, *content, *reason, *out, stdout, stderr)
	}
	return exportFromData(ctx, t, sel, exportRequest{content: *content, title: *title, reason: *reason, out: *out, quiet: *quiet}, stdout, stderr)
}

// selection is what to export: the records of a trace or of a session, or
// records by sequence number.
type selection struct {
	trace, session string
	seqs           []int64
}

func (s selection) String() string {
	switch {
	case s.trace != "":
		return "trace " + s.trace
	case s.session != "":
		return "session " + s.session
	}
	parts := make([]string, len(s.seqs))
	for i, n := range s.seqs {
		parts[i] = strconv.FormatInt(n, 10)
	}
	if list := strings.Join(parts, ","); len(list) <= 200 {
		return "records " + list
	}
	return fmt.Sprintf("%d records", len(s.seqs))
}

func parseSelection(trace, session, seqList string) (selection, error) {
	n := 0
	for _, v := range []string{trace, session, seqList} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return selection{}, withHint(errors.New("export: give one of --trace, --session and --seq"), "infertrail export --trace 4bf92f3577b34da6a3ce929d0e0e4736 --out evidence.zip --data DIR")
	}
	sel := selection{trace: strings.ToLower(trace), session: session}
	if trace != "" && !validTrace(sel.trace) {
		return selection{}, fmt.Errorf("--trace %q: want a W3C trace id, 32 hex digits", trace)
	}
	if seqList != "" {
		for f := range strings.SplitSeq(seqList, ",") {
			v, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil || v < 0 {
				return selection{}, fmt.Errorf("--seq: %q is not a sequence number", f)
			}
			sel.seqs = append(sel.seqs, v)
		}
		if len(sel.seqs) > export.MaxBundleRecords {
			return selection{}, fmt.Errorf("--seq: %d records, more than a bundle holds (%d)", len(sel.seqs), export.MaxBundleRecords)
		}
	}
	return sel, nil
}

func validTrace(s string) bool {
	if len(s) != 32 || strings.Trim(s, "0") == "" {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// exportRequest gathers the export flags.
type exportRequest struct {
	content       bool
	title, reason string
	out           string
	quiet         bool
}

// exportFromData writes a bundle from a data folder, then appends the
// access records that say so; the bundle is put in place only once they
// are committed.
func exportFromData(ctx context.Context, t target, sel selection, req exportRequest, stdout, stderr io.Writer) error {
	dk, _, err := openDataFolder(*t.data, "", false, "")
	if err != nil {
		return err
	}
	lg, _, closeLog, err := t.openLog(ctx, stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	progress := newExportProgress(stderr, req.quiet)
	found, err := selectRecords(ctx, lg, sel, progress.scan)
	progress.done()
	if err != nil {
		return err
	}
	if len(found) == 0 {
		return withHint(fmt.Errorf("export: no records of %s", sel), "'infertrail query' finds records by trace, session, actor, model or tool")
	}
	seqs := slices.Sorted(maps.Keys(found))
	tmp, err := os.CreateTemp(filepath.Dir(req.out), ".infertrail-export-*")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, removes nothing
	h := sha256.New()
	m, err := export.WriteBundle(ctx, io.MultiWriter(tmp, h), lg, export.BundleOptions{
		Seqs: seqs, Content: req.content, Title: req.title, Depth: timelineDepths(found),
		Exporter: cliActor().ID, VerifierKey: dk.vkey, Progress: progress.write,
	})
	progress.done()
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	var sum [sha256.Size]byte
	access, err := recordExport(ctx, lg, m, found, sel, req, "sha256:"+hex.EncodeToString(h.Sum(sum[:0])))
	if err != nil {
		return fmt.Errorf("export: the bundle was not kept, since its export could not be recorded: %w", err)
	}
	if err := os.Rename(tmp.Name(), req.out); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	printExported(stdout, req.out, m)
	fmt.Fprintf(stdout, "The export is recorded in the log as access record %s.\n", joinSeqs(access))
	return nil
}

// recordInfo is what the export needs of a selected record.
type recordInfo struct {
	tenant                    string
	id                        infertrail.UUID
	trace, span, parentSpanID string
}

// selectRecords returns the records to export: the given ones, or a trace's
// or a session's, from the investigation index.
func selectRecords(ctx context.Context, lg *ledger.Log, sel selection, progress func(done, total int64)) (map[int64]recordInfo, error) {
	found := map[int64]recordInfo{}
	keep := func(e *infertrail.Entry) error {
		r, err := infertrail.ParseLeaf(e.Leaf)
		if err != nil {
			return fmt.Errorf("record %d: %w; run 'infertrail verify'", e.Seq, err)
		}
		found[e.Seq] = recordInfo{tenant: r.Tenant, id: r.ID, trace: r.TraceID, span: r.SpanID, parentSpanID: r.ParentSpanID}
		return nil
	}
	if sel.seqs != nil {
		for _, seq := range sel.seqs {
			e, err := lg.Entry(ctx, seq)
			if err != nil {
				return nil, fmt.Errorf("export: record %d: %w", seq, err)
			}
			if err := keep(&e); err != nil {
				return nil, err
			}
		}
		return found, nil
	}
	// A trace or a session: from the investigation index, brought up to
	// date first (a data folder whose server has run is mostly indexed).
	e, err := newEngine(lg, nil, investigateConfig{NoFullText: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	for {
		n, err := e.IndexStep(ctx)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			break
		}
		done, _ := lg.Store().Cursor(ctx, investigate.IndexCursor)
		size, _ := lg.TreeSize(ctx)
		progress(done, size)
	}
	key := infertrail.IndexKey(infertrail.IndexTrace, sel.trace)
	if sel.session != "" {
		key = infertrail.IndexKey(infertrail.IndexSession, sel.session)
	}
	q := infertrail.Query{Keys: []string{key}, Limit: infertrail.MaxQueryLimit}
	for {
		n := 0
		err := lg.Store().Query(ctx, q, func(e *infertrail.Entry) error {
			n++
			q.Before = e.Seq
			if len(found) == export.MaxBundleRecords {
				return fmt.Errorf("export: %s has more than %d records, more than a bundle holds", sel, export.MaxBundleRecords)
			}
			return keep(e)
		})
		if err != nil {
			return nil, err
		}
		if n < q.Limit {
			return found, nil
		}
	}
}

// timelineDepths indents each record under the record of its parent span,
// when the selection holds one.
func timelineDepths(found map[int64]recordInfo) map[int64]int {
	type spanKey struct{ trace, span string }
	parent := map[spanKey]string{} // span → its parent span, as its first record says
	for _, seq := range slices.Sorted(maps.Keys(found)) {
		r := found[seq]
		if k := (spanKey{r.trace, r.span}); r.span != "" {
			if _, ok := parent[k]; !ok {
				parent[k] = r.parentSpanID
			}
		}
	}
	depths := map[int64]int{}
	for seq, r := range found {
		if r.span == "" {
			continue
		}
		k, d := spanKey{r.trace, r.span}, 0
		for d < 12 {
			p := spanKey{k.trace, parent[k]}
			if _, ok := parent[p]; !ok || p.span == "" || p == (spanKey{r.trace, r.span}) {
				break
			}
			k, d = p, d+1
		}
		depths[seq] = d
	}
	return depths
}

// maxAccessLinks is the most "reads" links an access record holds (the
// record limit); the bundle's manifest lists every record.
const maxAccessLinks = 64

// recordExport appends one access record per tenant of the exported
// records, saying who exported what, and why.
func recordExport(ctx context.Context, lg *ledger.Log, m export.Manifest, found map[int64]recordInfo, sel selection, req exportRequest, bundleSum string) ([]int64, error) {
	byTenant := map[string][]infertrail.UUID{}
	for _, r := range m.Records {
		tenant := found[r.Seq].tenant
		if _, ok := found[r.Seq]; !ok { // an erasure record the bundle added
			e, err := lg.Entry(ctx, r.Seq)
			if err != nil {
				return nil, err
			}
			tenant = e.Tenant
		}
		byTenant[tenant] = append(byTenant[tenant], r.ID)
	}
	str := func(s string) json.RawMessage { return infertrail.AppendString(nil, s) }
	var recs []*infertrail.Record
	for _, tenant := range slices.Sorted(maps.Keys(byTenant)) {
		ids := byTenant[tenant]
		attrs := map[string]json.RawMessage{
			"access.action":            str("export"),
			"access.export.format":     str("bundle"),
			"access.export.records":    json.RawMessage(strconv.Itoa(len(ids))),
			"access.export.content":    json.RawMessage(strconv.FormatBool(req.content)),
			"access.export.sha256":     str(bundleSum),
			"access.export.checkpoint": json.RawMessage(strconv.FormatInt(m.Checkpoint.Size, 10)),
		}
		switch {
		case sel.trace != "":
			attrs["access.trace_id"] = str(sel.trace)
		case sel.session != "":
			attrs["access.session_id"] = str(sel.session)
		}
		if req.reason != "" {
			attrs["access.reason"] = str(req.reason)
		}
		rec := &infertrail.Record{Kind: infertrail.KindAccess, Tenant: tenant, Actor: cliActor(), Source: "cli", Attributes: attrs}
		for _, id := range ids[:min(len(ids), maxAccessLinks)] {
			rec.Links = append(rec.Links, infertrail.Link{Rel: "reads", ID: id})
		}
		recs = append(recs, rec)
	}
	return lg.Record(ctx, recs...)
}

func joinSeqs(seqs []int64) string {
	parts := make([]string, len(seqs))
	for i, s := range seqs {
		parts[i] = strconv.FormatInt(s, 10)
	}
	if len(parts) > 1 {
		return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1] + " (one per tenant)"
	}
	return strings.Join(parts, "")
}

// printExported tells where the bundle is and how to check it.
func printExported(w io.Writer, path string, m export.Manifest) {
	var size string
	if fi, err := os.Stat(path); err == nil {
		size = fmt.Sprintf(", %d bytes", fi.Size())
	}
	what := "commitments only"
	if m.Content {
		what = "content revealed"
	}
	fmt.Fprintf(w, "Wrote %s: %d records of %s, %s%s.\n", path, len(m.Records), m.Title, what, size)
	fmt.Fprintf(w, "Their proofs lead to the checkpoint of size %d (root %s); the latest checkpoint at export has size %d.\n",
		m.Checkpoint.Size, m.Checkpoint.Root, m.Latest.Size)
	fmt.Fprintf(w, "Check it on any machine with: infertrail verify %s --key %s\n", path, m.VerifierKey)
}

// exportFromServer downloads a bundle from a server's /v1/export, checks
// that it is a bundle that verifies, and puts it in place.
func exportFromServer(ctx context.Context, t target, sel selection, content bool, reason, out string, stdout, stderr io.Writer) error {
	base, err := url.Parse(strings.TrimSuffix(*t.server, "/") + "/")
	if err != nil || base.Scheme != "http" && base.Scheme != "https" {
		return fmt.Errorf("server URL %q: want http:// or https://", *t.server)
	}
	q := url.Values{}
	switch {
	case sel.trace != "":
		q.Set("trace", sel.trace)
	case sel.session != "":
		q.Set("session", sel.session)
	default:
		parts := make([]string, len(sel.seqs))
		for i, s := range sel.seqs {
			parts[i] = strconv.FormatInt(s, 10)
		}
		q.Set("seq", strings.Join(parts, ","))
	}
	if content {
		q.Set("content", "true")
	}
	u := base.JoinPath("v1/export")
	u.RawQuery = q.Encode()
	httpReq, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if reason != "" {
		httpReq.Header.Set(httpapi.HeaderReason, reason)
	}
	resp, err := clientWithToken(resolveToken(*t.token), 0).Do(httpReq)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return fmt.Errorf("export: server answered %d: %s", resp.StatusCode, e.Error.Message)
		}
		return fmt.Errorf("export: server answered %s", resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".infertrail-export-*")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, resp.Body)
	if err == nil {
		err = tmp.Sync()
	}
	if err != nil {
		tmp.Close()
		return fmt.Errorf("export: download: %w", err)
	}
	// The server's own key proves nothing here; this only checks that
	// what arrived is a complete, consistent bundle.
	rep, verr := export.VerifyBundle(tmp, n, nil)
	if cerr := tmp.Close(); cerr != nil {
		return fmt.Errorf("export: %w", cerr)
	}
	if verr != nil {
		return fmt.Errorf("export: the server sent a bundle that does not verify: %w", verr)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	what := "commitments only"
	if rep.Content {
		what = "content revealed"
	}
	fmt.Fprintf(stdout, "Wrote %s: %d records of %s, %s, %d bytes.\n", out, len(rep.Records), orSelection(rep.Title, sel), what, n)
	fmt.Fprintf(stdout, "Their proofs lead to the checkpoint of size %d (root %s).\n", rep.Checkpoint.Size, rep.Checkpoint.Root)
	fmt.Fprintf(stdout, "Check it on any machine with: infertrail verify %s --key %s\n", out, rep.VerifierKey)
	return nil
}

func orSelection(title string, sel selection) string {
	if title != "" {
		return title
	}
	return sel.String()
}

// verifyBundle verifies an evidence bundle offline and prints the report.
func verifyBundle(path string, key note.Verifier, witnesses []note.Verifier, stdout, stderr io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return withHint(fmt.Errorf("bundle: %w", err), "give the .zip file that 'infertrail export' wrote")
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return withHint(fmt.Errorf("bundle %s is a directory", path), "give the .zip file itself; to verify a data folder use --data")
	}
	if key == nil {
		fmt.Fprintln(stderr, "infertrail: checking signatures with the key in the bundle itself; pass --key with the log's key, obtained from its operator, to prove who signed it")
	}
	rep, err := export.VerifyBundle(f, fi.Size(), key)
	if werr := rep.Write(stdout); werr != nil {
		return werr
	}
	var be *export.BundleError
	if errors.As(err, &be) {
		return exitError{1}
	}
	if err != nil || len(witnesses) == 0 {
		return err
	}
	// The records' checkpoint is vouched for by a witness that cosigned
	// it, or that cosigned the latest one, which the bundle proves it a
	// prefix of.
	cp := rep.Checkpoint
	if rep.Consistent && len(ledger.Cosigned(rep.Latest.Note, witnesses...)) > len(ledger.Cosigned(cp.Note, witnesses...)) {
		cp = rep.Latest
	}
	return checkCosigned(stdout, cp, witnesses)
}

// exportProgress prints what a long export has done.
type exportProgress struct{ *progressPrinter }

func newExportProgress(w io.Writer, quiet bool) exportProgress {
	return exportProgress{newProgress(w, quiet, "")}
}

func (p exportProgress) scan(done, total int64) {
	p.show("searched %d / %d records", done, total)
}

func (p exportProgress) write(done, total int) {
	p.show("exported %d / %d records", done, total)
}
