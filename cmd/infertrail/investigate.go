package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/httpapi"
	"github.com/infertrail/infertrail/investigate"
	"github.com/infertrail/infertrail/ledger"
)

// investigateConfig is the investigation part of the configuration file.
type investigateConfig struct {
	// Window is how long the detectors wait for what should follow a
	// record before they judge it (default 5m).
	Window duration `yaml:"window"`
	// ApprovedModels are the model versions allowed to answer (path.Match
	// patterns); empty: no list.
	ApprovedModels []string `yaml:"approved_models"`
	// Disabled names detectors not to run.
	Disabled []string `yaml:"disabled_detectors"`
	// NoFullText turns off the full-text index of content.
	NoFullText bool `yaml:"no_full_text"`
}

// newEngine builds the investigation engine over a log.
func newEngine(lg *ledger.Log, secret []byte, c investigateConfig, logger *slog.Logger) (*investigate.Engine, error) {
	cfg := investigate.Config{
		Store:  lg.Store(),
		Detect: investigate.DetectConfig{Window: time.Duration(c.Window), ApprovedModels: c.ApprovedModels, Disabled: c.Disabled},
		Checkpoint: func(ctx context.Context) (int64, tlog.Hash, error) {
			cp, err := lg.LatestCheckpoint(ctx)
			return cp.Size, cp.Root, err
		},
		Logger: logger,
	}
	if !c.NoFullText {
		terms, err := investigate.NewTerms(secret)
		if err != nil {
			return nil, err
		}
		cfg.Terms = terms
		cr := lg.ContentReader()
		cfg.Content = cr.ReadParts
	}
	e, err := investigate.New(cfg)
	if err != nil {
		return nil, withHint(fmt.Errorf("investigate: %w", err), "check the investigate section of the configuration file")
	}
	return e, nil
}

// localAPI serves a command's API calls in process, over the data folder,
// as the operator: the same code answers as a server would.
type localAPI struct{ h http.Handler }

func (l localAPI) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	l.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// apiCall sends a request to the target: a server's API, or with --data the
// same API in process. out receives the decoded JSON answer; raw, if not
// nil, the body as it came.
func (t target) apiCall(ctx context.Context, stderr io.Writer, method, path string, out any) error {
	if *t.server != "" {
		return t.call(ctx, method, path, nil, out)
	}
	lg, cfg, done, err := t.openLog(ctx, stderr)
	if err != nil {
		return err
	}
	defer done()
	dk, _, err := openDataFolder(*t.data, "", false, "")
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := newEngine(lg, dk.secret, cfg.Investigate, logger)
	if err != nil {
		return err
	}
	api, err := httpapi.New(httpapi.Config{Log: lg, Investigate: e, Logger: logger})
	if err != nil {
		return err
	}
	saved := *t.server
	*t.server = "http://local"
	defer func() { *t.server = saved }()
	return t.callWith(ctx, &http.Client{Transport: localAPI{api}}, method, path, nil, out)
}

func queryCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("query", stderr)
	t := addTarget(fs)
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	params := map[string]*string{}
	for _, p := range []struct{ name, usage string }{
		{"tenant", "only this `tenant`"}, {"kind", "only these `kinds`, comma-separated"},
		{"from", "observed at or after this RFC 3339 `time`"}, {"to", "observed before this RFC 3339 `time`"},
		{"actor", "acted by this `actor` id"}, {"session", "in this `session`"}, {"trace", "in this `trace` id"},
		{"model", "answered by or asked of this `model`"}, {"tool", "about this `tool` name"},
		{"tool-call", "about this tool call `id`"}, {"decision", "policy decisions with this `result`"},
		{"finding", "flagged by this `detector`"}, {"q", "records whose content holds every `word` (investigators; recorded)"},
		{"cursor", "the next_cursor of the previous page"}, {"limit", "at most this many `records` (1 to 1000)"},
	} {
		params[p.name] = fs.String(p.name, "", p.usage)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := t.check(); err != nil {
		return err
	}
	v := url.Values{}
	for name, p := range params {
		if *p != "" {
			v.Set(strings.ReplaceAll(name, "-", "_"), *p)
		}
	}
	var resp struct {
		Records []struct {
			Seq    int64           `json:"seq"`
			ID     string          `json:"id"`
			Kind   string          `json:"kind"`
			Tenant string          `json:"tenant"`
			Time   string          `json:"time"`
			Record json.RawMessage `json:"record"`
		} `json:"records"`
		NextCursor     string `json:"next_cursor"`
		IndexedThrough int64  `json:"indexed_through"`
	}
	if err := t.apiCall(ctx, stderr, http.MethodGet, "v1/records?"+v.Encode(), &resp); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, resp)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tTENANT\tKIND\tWHAT\tACTOR\tTRACE")
	for _, it := range resp.Records {
		r, err := infertrail.ParseLeaf(it.Record)
		if err != nil {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t(does not parse)\t\t\n", it.Seq, it.Time, it.Tenant, it.Kind)
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", it.Seq, it.Time, it.Tenant, it.Kind, what(r), r.Actor.ID, r.TraceID)
	}
	tw.Flush()
	if resp.NextCursor != "" {
		fmt.Fprintf(stderr, "more: --cursor %s\n", resp.NextCursor)
	}
	return nil
}

// what is a short description of a record for a table.
func what(r *infertrail.Record) string {
	for _, s := range []string{investigate.Model(r), investigate.Attr(r, "gen_ai.tool.name"), investigate.Attr(r, "policy.result"),
		investigate.Attr(r, "credential.event"), investigate.Attr(r, "approval.decision"), investigate.Attr(r, "access.action"),
		investigate.Attr(r, "url.full"), investigate.Attr(r, "server.address")} {
		if s != "" {
			return s
		}
	}
	return ""
}

func showCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("show", stderr)
	t := addTarget(fs)
	asJSON := fs.Bool("json", false, "print the timeline as JSON")
	session := fs.Bool("session", false, "the argument is a session id (default: a trace id, or a session id when it is not 32 hex digits)")
	tenant := fs.String("tenant", "", "the `tenant` of the trace or session")
	id, err := parseFlagsArg(fs, args)
	if err != nil {
		return err
	}
	if id == "" {
		return withHint(errors.New("show: give one trace or session id"), "infertrail show [--data DIR | --server URL] TRACE_OR_SESSION")
	}
	if err := t.check(); err != nil {
		return err
	}
	kind := "traces"
	if *session || !isTraceID(id) {
		kind = "sessions"
	}
	path := "v1/" + kind + "/" + url.PathEscape(id)
	if *tenant != "" {
		path += "?tenant=" + url.QueryEscape(*tenant)
	}
	var tl investigate.Timeline
	if err := t.apiCall(ctx, stderr, http.MethodGet, path, &tl); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, tl)
	}
	printTimeline(stdout, &tl)
	if tl.Broken > 0 {
		return fmt.Errorf("%d record(s) of %s fail verification", tl.Broken, tl.Subject)
	}
	return nil
}

func isTraceID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// printTimeline prints a timeline as an indented tree.
func printTimeline(w io.Writer, tl *investigate.Timeline) {
	fmt.Fprintf(w, "%s — %d record(s), checked against the signed checkpoint of size %d\n", tl.Subject, tl.Records, tl.TreeSize)
	var walk func(ns []*investigate.Node, depth int)
	walk = func(ns []*investigate.Node, depth int) {
		for _, n := range ns {
			mark := map[string]string{investigate.Verified: "✓", investigate.Failed: "✗ FAILED", investigate.Pending: "… pending", investigate.Unverified: "?"}[n.Status]
			line := fmt.Sprintf("%s %s%s  #%d  %s", n.Time.UTC().Format("15:04:05.000"), strings.Repeat("  ", depth), n.Label, n.Seq, mark)
			if n.Actor != "" {
				line += "  by " + n.Actor
			}
			if len(n.Findings) > 0 {
				line += "  ⚑ " + strings.Join(n.Findings, ", ")
			}
			fmt.Fprintln(w, line)
			if n.Problem != "" {
				fmt.Fprintf(w, "%s   problem: %s\n", strings.Repeat("  ", depth+6), n.Problem)
			}
			walk(n.Children, depth+1)
		}
	}
	walk(tl.Roots, 0)
	if len(tl.Findings) > 0 {
		fmt.Fprintln(w, "\nfindings:")
		for _, f := range tl.Findings {
			fmt.Fprintf(w, "  [%s] %s: %s (records %v)\n", f.Severity, f.Detector, f.Summary, f.Records)
		}
	}
	if tl.Truncated {
		fmt.Fprintf(w, "\n(only the latest %d records are shown)\n", infertrail.MaxQueryLimit)
	}
}

func findingsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("findings", stderr)
	t := addTarget(fs)
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	detector := fs.String("detector", "", "only this `detector`'s findings")
	tenant := fs.String("tenant", "", "only this `tenant`")
	seq := fs.String("seq", "", "only findings about this record `seq`")
	limit := fs.String("limit", "", "at most this many `findings`")
	detect := fs.String("detect", "", "first run the detectors now over this trace or session `id` (with no window)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := t.check(); err != nil {
		return err
	}
	v := url.Values{}
	for name, p := range map[string]*string{"detector": detector, "tenant": tenant, "seq": seq, "limit": limit} {
		if *p != "" {
			v.Set(name, *p)
		}
	}
	if *detect != "" {
		d := url.Values{"window": {"0s"}}
		if isTraceID(*detect) {
			d.Set("trace", *detect)
		} else {
			d.Set("session", *detect)
		}
		if *tenant != "" {
			d.Set("tenant", *tenant)
		}
		if err := t.apiCall(ctx, stderr, http.MethodPost, "v1/detect?"+d.Encode(), nil); err != nil {
			return err
		}
	}
	var resp httpapi.FindingsPage
	if err := t.apiCall(ctx, stderr, http.MethodGet, "v1/findings?"+v.Encode(), &resp); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, resp)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSEVERITY\tDETECTOR\tTENANT\tRECORDS\tSUMMARY")
	for _, f := range resp.Findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\n", f.Time, f.Severity, f.Detector, f.Tenant, f.Records, f.Summary)
	}
	return tw.Flush()
}

// printJSON prints v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
