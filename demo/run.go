// Package demo replays InferTrail's seed scenarios against a running
// server, through its real capture paths: the LLM gateway (with the
// official OpenAI Go SDK), the MCP gateway (with the official MCP Go SDK),
// the OTLP receiver (with the OpenTelemetry Go SDK), native ingest (with
// package client), policy enforcement and the approvals API. It never
// writes a record itself.
//
// Its scripted actors (Start) are a model upstream in OpenAI's wire format,
// an MCP tool server and the services behind its tools; the server is
// configured with their URLs, with WritePolicies' policies, and with the
// actors' virtual keys. Run then plays four scenarios in tenant "demo",
// has the detectors judge each one at once (POST /v1/detect), and checks
// each scenario's timeline and findings against what the scenario
// expects. Everything listens on 127.0.0.1; nothing leaves the machine.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/investigate"
)

// Config is what Run needs of the server.
type Config struct {
	// URL is the server's base URL (required); its gateways must be on it.
	URL string
	// AdminToken is an admin API token of the server (required): Run
	// creates the demo's tokens with it, each for tenant Tenant.
	AdminToken string
	// Actors are the started actors the server is configured with
	// (required).
	Actors *Actors
	// Progress, if set, receives a line as each scenario ends.
	Progress io.Writer
	// TokenTTL is the lifetime of the tokens Run creates (default 24h).
	TokenTTL time.Duration
}

// The demo's API tokens, by name. Each is in tenant Tenant.
const (
	vaultToken        = "demo-vault"
	deployToken       = "demo-deploy-api"
	otelToken         = "demo-otel"
	approverToken     = "demo-approver:carol@example.com"
	InvestigatorToken = "demo-investigator"
)

// Result is what Run did.
type Result struct {
	Scenarios []*Scenario
	// Tokens are the API tokens Run created, by name: each agent's
	// gateway token (named by its agent id), the ingest tokens of the
	// vault, the deploy API and the OpenTelemetry exporters, the
	// approver's, and InvestigatorToken, which reads, detects and exports.
	Tokens map[string]string
}

// OK reports whether every scenario went as expected.
func (r *Result) OK() bool {
	for _, s := range r.Scenarios {
		if !s.OK() {
			return false
		}
	}
	return len(r.Scenarios) > 0
}

// Scenario is one scenario as it ran.
type Scenario struct {
	N     int
	Name  string // a short name, such as "finance"
	Title string
	// Story says what happened, a line per step.
	Story     []string
	TraceID   string
	SessionID string
	// Expected are the detectors expected to flag the trace, sorted.
	Expected []string
	// Findings are what the detectors found in the trace.
	Findings []Finding
	// Timeline is the trace's timeline, with its verification status.
	Timeline *investigate.Timeline
	// Checks are the checks of the timeline's shape.
	Checks []Check
	// Attempts are the red team's attempts (scenario 4).
	Attempts []Attempt
	// Duration is how long the scenario took to play.
	Duration time.Duration
	// expect checks the timeline's shape.
	expect func(t *tree) []Check
	// Err is why the scenario could not be played to its end, if it could
	// not.
	Err error
}

// Finding is a detector's finding.
type Finding struct {
	Detector string  `json:"detector"`
	Severity string  `json:"severity"`
	Summary  string  `json:"summary"`
	Records  []int64 `json:"records"`
}

// Check is one expectation of a scenario's timeline.
type Check struct {
	What string
	OK   bool
}

// Detectors returns the detectors of the scenario's findings, sorted and
// without repeats.
func (s *Scenario) Detectors() []string {
	var out []string
	for _, f := range s.Findings {
		out = append(out, f.Detector)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Missing returns the expected detectors that did not flag the scenario.
func (s *Scenario) Missing() []string {
	found := s.Detectors()
	var out []string
	for _, d := range s.Expected {
		if !slices.Contains(found, d) {
			out = append(out, d)
		}
	}
	return out
}

// Unexpected returns the detectors that flagged the scenario unexpectedly.
func (s *Scenario) Unexpected() []string {
	var out []string
	for _, d := range s.Detectors() {
		if !slices.Contains(s.Expected, d) {
			out = append(out, d)
		}
	}
	return out
}

// FindingsAsExpected reports whether every expected detector flagged the
// scenario, and no other did.
func (s *Scenario) FindingsAsExpected() bool {
	return len(s.Missing()) == 0 && len(s.Unexpected()) == 0
}

// OK reports whether the scenario ran to its end, its findings are the
// expected ones, every check passed, and no red-team attempt had an
// unexpected outcome.
func (s *Scenario) OK() bool {
	if s.Err != nil || s.Timeline == nil || !s.FindingsAsExpected() {
		return false
	}
	for _, c := range s.Checks {
		if !c.OK {
			return false
		}
	}
	for _, a := range s.Attempts {
		if !a.AsDesigned() {
			return false
		}
	}
	return true
}

// Attempt is one red-team prompt-injection attempt.
type Attempt struct {
	Technique string
	Prompt    string
	Model     string
	// ShouldDeny is the guardrail decision the attempt should get.
	ShouldDeny bool
	// KnownGap marks an attempt the demo policy is known to miss.
	KnownGap bool
	// Denied is what happened: the gateway refused the request.
	Denied bool
	// Reason is the refusal's message, or the model's reply.
	Reason string
}

// Miss reports whether the guardrail let through an attempt it should
// have denied.
func (a Attempt) Miss() bool { return a.ShouldDeny && !a.Denied }

// AsDesigned reports whether the outcome is the expected one, or the
// demo policy's known miss.
func (a Attempt) AsDesigned() bool { return a.Denied == a.ShouldDeny || a.KnownGap && a.Miss() }

// Verdict says how the outcome compares with the expected decision.
func (a Attempt) Verdict() string {
	switch {
	case a.Denied && a.ShouldDeny:
		return "blocked, as expected"
	case !a.Denied && !a.ShouldDeny:
		return "allowed, as expected"
	case a.Miss() && a.KnownGap:
		return "MISS: allowed, should have been blocked (a known gap of the demo policy)"
	case a.Miss():
		return "MISS: allowed, should have been blocked"
	}
	return "FALSE POSITIVE: blocked, should have been allowed"
}

// Run plays the scenarios against the server, in order, then has the
// detectors judge each scenario's trace and reads its timeline. An error
// is returned only when nothing could be played (the server cannot be
// reached, a token cannot be made); a scenario that fails says so in its
// Err, and the others still run.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.URL == "" || cfg.AdminToken == "" || cfg.Actors == nil {
		return nil, errors.New("demo: Config needs URL, AdminToken and Actors")
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 24 * time.Hour
	}
	d := &runner{cfg: cfg, a: cfg.Actors, api: &api{base: strings.TrimSuffix(cfg.URL, "/")}, progress: cfg.Progress}
	if d.progress == nil {
		d.progress = io.Discard
	}
	res := &Result{Tokens: map[string]string{}}
	for _, t := range []struct {
		name  string
		roles []string
	}{
		{financeBot, []string{"gateway"}}, {opsBot, []string{"gateway"}}, {supportBot, []string{"gateway"}},
		{vaultToken, []string{"ingest"}}, {deployToken, []string{"ingest"}}, {otelToken, []string{"ingest"}},
		{approverToken, []string{"approver"}}, {InvestigatorToken, []string{"investigator"}},
	} {
		tok, err := d.api.createToken(ctx, cfg.AdminToken, t.name, t.roles, cfg.TokenTTL)
		if err != nil {
			return nil, fmt.Errorf("demo: create the token %s: %w", t.name, err)
		}
		res.Tokens[t.name] = tok
	}
	d.tokens = res.Tokens
	if err := d.a.wire(ctx, d.api.base, res.Tokens); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	for i, play := range []func(context.Context, *Scenario) error{d.finance, d.operations, d.anomalous, d.redTeam} {
		s := &Scenario{N: i + 1}
		start := time.Now()
		err := play(ctx, s)
		s.Duration = time.Since(start)
		if err != nil {
			s.Err = err
			fmt.Fprintf(d.progress, "  %d. %-28s failed: %v\n", s.N, s.Title, err)
		} else {
			fmt.Fprintf(d.progress, "  %d. %-28s played in %s\n", s.N, s.Title, s.Duration.Round(time.Millisecond))
		}
		res.Scenarios = append(res.Scenarios, s)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
	}
	// Timelines check each record against the latest signed checkpoint
	// (and detection reads the timeline): let one cover every record.
	d.waitCheckpoint(ctx)
	// The detectors wait a window for what should follow a record; here
	// every scenario has ended, so they judge at once.
	for _, s := range res.Scenarios {
		if s.TraceID == "" {
			continue
		}
		var out struct {
			Findings []Finding `json:"findings"`
		}
		if err := d.api.call(ctx, d.tokens[InvestigatorToken], http.MethodPost, "/v1/detect?"+url.Values{"trace": {s.TraceID}, "window": {"0s"}}.Encode(), nil, &out); err != nil {
			s.Err = errors.Join(s.Err, fmt.Errorf("detect: %w", err))
			continue
		}
		s.Findings = out.Findings
	}
	for _, s := range res.Scenarios {
		if s.TraceID == "" {
			continue
		}
		var tl investigate.Timeline
		if err := d.api.call(ctx, d.tokens[InvestigatorToken], http.MethodGet, "/v1/traces/"+s.TraceID, nil, &tl); err != nil {
			s.Err = errors.Join(s.Err, fmt.Errorf("timeline: %w", err))
			continue
		}
		s.Timeline = &tl
		if s.expect != nil {
			s.Checks = s.expect(newTree(&tl))
		}
	}
	return res, nil
}

// runner plays the scenarios.
type runner struct {
	cfg      Config
	a        *Actors
	api      *api
	tokens   map[string]string
	progress io.Writer
}

// waitCheckpoint waits, for up to five seconds, until a signed checkpoint
// covers the whole log.
func (d *runner) waitCheckpoint(ctx context.Context) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var info struct {
			TreeSize   int64 `json:"tree_size"`
			Checkpoint struct {
				Size int64 `json:"size"`
			} `json:"checkpoint"`
		}
		if d.api.call(ctx, d.tokens[InvestigatorToken], http.MethodGet, "/v1/log", nil, &info) == nil && info.Checkpoint.Size >= info.TreeSize {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// api calls the server's HTTP API.
type api struct {
	base string
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// call sends a JSON request with a bearer token and decodes the JSON
// answer into out, if not nil. An answer other than 2xx is an error with
// the server's message.
func (a *api) call(ctx context.Context, token, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error.Message)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// createToken creates an API token in tenant Tenant and returns its secret.
func (a *api) createToken(ctx context.Context, admin, name string, roles []string, ttl time.Duration) (string, error) {
	var out struct {
		Token string `json:"token"`
	}
	err := a.call(ctx, admin, http.MethodPost, "/v1/tokens", map[string]any{"name": name, "tenant": Tenant, "roles": roles,
		"expires_in": ttl.String()}, &out)
	if err == nil && out.Token == "" {
		err = errors.New("the answer holds no token")
	}
	return out.Token, err
}

// tree is a timeline with each node's record and parent.
type tree struct {
	nodes  []*investigate.Node
	parent map[*investigate.Node]*investigate.Node
	rec    map[*investigate.Node]*infertrail.Record
	broken int
}

func newTree(tl *investigate.Timeline) *tree {
	t := &tree{parent: map[*investigate.Node]*investigate.Node{}, rec: map[*investigate.Node]*infertrail.Record{}, broken: tl.Broken}
	var walk func(p *investigate.Node, ns []*investigate.Node)
	walk = func(p *investigate.Node, ns []*investigate.Node) {
		for _, n := range ns {
			t.nodes = append(t.nodes, n)
			if p != nil {
				t.parent[n] = p
			}
			if r, err := infertrail.ParseLeaf(n.Leaf); err == nil {
				t.rec[n] = r
			}
			walk(n, n.Children)
		}
	}
	walk(nil, tl.Roots)
	return t
}

// find returns the nodes of a kind for which match holds.
func (t *tree) find(kind infertrail.Kind, match func(n *investigate.Node, r *infertrail.Record) bool) []*investigate.Node {
	var out []*investigate.Node
	for _, n := range t.nodes {
		if r := t.rec[n]; r != nil && n.Kind == kind && (match == nil || match(n, r)) {
			out = append(out, n)
		}
	}
	return out
}

// operation returns the nodes of the operations that nodes belong to: the
// records of the same kind and span (a gateway's request and response).
func (t *tree) operation(nodes []*investigate.Node) []*investigate.Node {
	var out []*investigate.Node
	for _, n := range t.nodes {
		for _, m := range nodes {
			if r, q := t.rec[n], t.rec[m]; r != nil && q != nil && n.Kind == m.Kind && r.SpanID != "" && r.SpanID == q.SpanID {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// under reports whether n hangs, at any depth, under one of ancestors.
func (t *tree) under(n *investigate.Node, ancestors []*investigate.Node) bool {
	for p := t.parent[n]; p != nil; p = t.parent[p] {
		if slices.Contains(ancestors, p) {
			return true
		}
	}
	return false
}

// verified reports whether no record failed verification, and every one
// is verified or waits for the next checkpoint.
func (t *tree) verified() bool {
	for _, n := range t.nodes {
		if n.Status != investigate.Verified && n.Status != investigate.Pending {
			return false
		}
	}
	return t.broken == 0 && len(t.nodes) > 0
}

// attr returns a record's attribute as a string ("" if absent), or its
// JSON text when it is not a string.
func attr(r *infertrail.Record, name string) string {
	v, ok := r.Attributes[name]
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}

func linksTo(r *infertrail.Record, rel string, to *infertrail.Record) bool {
	for _, l := range r.Links {
		if l.Rel == rel && l.ID == to.ID {
			return true
		}
	}
	return false
}

// asks reports whether an inference record says the model asked for a
// tool call.
func asks(r *infertrail.Record, name, callID string) bool {
	for _, tc := range investigate.RequestedToolCalls(r) {
		if tc.Name == name && (callID == "" || tc.ID == callID) {
			return true
		}
	}
	return false
}
