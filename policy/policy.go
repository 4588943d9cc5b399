// Package policy evaluates Rego policies with an embedded Open Policy Agent
// at the gateways' enforcement points, and reloads them when their files
// change, recording every load.
//
// A policy folder holds .rego files (Rego v1) and, optionally, a data.json
// whose object becomes the data document. Each enforcement point queries one
// rule:
//
//	inference.request   data.infertrail.inference.request.decision
//	inference.response  data.infertrail.inference.response.decision
//	tool.call           data.infertrail.tool.call.decision
//
// docs/policy.md specifies the input document, the decision object and the
// reload semantics.
package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/print"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/infertrail/infertrail"
)

// Config configures an Engine.
type Config struct {
	// Dir is the policy folder: the .rego files and the optional data.json
	// directly in it (subfolders and names starting with "." are ignored).
	// Required.
	Dir string
	// Recorder receives an access record for each load and each failed
	// load. Required.
	Recorder infertrail.Recorder
	// Tenant is the tenant of those records (default
	// infertrail.DefaultTenant).
	Tenant string
	// Interval is how often Run checks the folder for changes (default 1 s).
	Interval time.Duration
	// Logger receives loads at Info, failed loads at Error and the
	// policies' print() output at Debug (default slog.Default()).
	Logger *slog.Logger
	// Now tells the time of records and of the policies' time built-ins
	// (default time.Now).
	Now func() time.Time
	// History fills the input's "earlier" with the session's earlier
	// decisions on this node (the latest 32 of up to 50,000 sessions), and
	// keeps each decision for the next. Off, "earlier" is what the caller
	// gave.
	History bool
}

// Engine decides with the policies of one folder. It is safe for
// concurrent use.
type Engine struct {
	cfg Config
	cur atomic.Pointer[loaded]

	mu   sync.Mutex // serialises loads
	seen string     // the folder's fingerprint at the last load attempt

	history *history // each session's earlier decisions, for the input's "earlier"
}

var _ infertrail.PolicyEngine = (*Engine)(nil)

// The records' capture source and actor.
const (
	Source  = "policy"
	ActorID = "infertrail:policy"
)

// The access.action of the records of a load and of a failed load.
const (
	ActionLoad       = "policy.load"
	ActionLoadFailed = "policy.load_failed"
)

// DataFile is the name of the optional data document in a policy folder.
const DataFile = "data.json"

// maxErrorLen bounds the policy.error attribute: attributes are in clear in
// the leaf, and the full message is in the log.
const maxErrorLen = 4 << 10

var noMetrics = metrics.NoOp()

// points are the enforcement points, in the order loaded.points holds them.
var points = [...]infertrail.PolicyPoint{
	infertrail.PointInferenceRequest,
	infertrail.PointInferenceResponse,
	infertrail.PointToolCall,
}

func pointIndex(p infertrail.PolicyPoint) int {
	switch p {
	case infertrail.PointInferenceRequest:
		return 0
	case infertrail.PointInferenceResponse:
		return 1
	case infertrail.PointToolCall:
		return 2
	}
	return -1
}

// PackageOf returns the Rego package whose decision rule the point queries,
// such as "infertrail.tool.call".
func PackageOf(p infertrail.PolicyPoint) string { return "infertrail." + string(p) }

// loaded is one compiled policy folder. It is never changed once published.
type loaded struct {
	bundle string
	points [len(points)]prepared
}

// prepared is one point's query.
type prepared struct {
	id string // the package, such as "infertrail.tool.call"
	// defined says whether a rule or data defines the decision; when not,
	// there is no policy for the point and the query is not evaluated.
	defined bool
	query   rego.PreparedEvalQuery
}

// New loads and compiles the policies in cfg.Dir and records the load. A
// policy that does not parse or compile is an error naming the file and
// line (and is recorded as a failed load).
func New(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("policy: no Dir: %w", infertrail.ErrInvalid)
	}
	if cfg.Recorder == nil {
		return nil, fmt.Errorf("policy: no Recorder: %w", infertrail.ErrInvalid)
	}
	if cfg.Tenant == "" {
		cfg.Tenant = infertrail.DefaultTenant
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	e := &Engine{cfg: cfg, history: newHistory(historySessions)}
	if err := e.Reload(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// Bundle returns the digest of the policy files in force, "sha256:<hex>":
// the SHA-256 of the lines "<hex SHA-256 of the file>  <name>\n" for each
// file in byte order of names, which is what `sha256sum` prints for them.
func (e *Engine) Bundle() string { return e.cur.Load().bundle }

// Defines says whether a policy in force decides at point: a gateway
// holds a response back for the inference.response point only when one
// does.
func (e *Engine) Defines(point infertrail.PolicyPoint) bool {
	i := pointIndex(point)
	return i >= 0 && e.cur.Load().points[i].defined
}

// ErrPolicy marks an evaluation that gave no decision: the policy failed
// at run time, its decision is undefined for the input, or it is not a
// decision object. The call must not go ahead.
var ErrPolicy = errors.New("policy gave no decision")

// Decide evaluates the point's decision rule on input. With no rule for the
// point it returns Decision{Result: allow} with no PolicyID. An error means
// the call must not go ahead; the Decision returned with it holds what is
// known (PolicyID, Bundle, InputDigest, EvalTime) to record the failure.
func (e *Engine) Decide(ctx context.Context, point infertrail.PolicyPoint, input map[string]any) (infertrail.Decision, error) {
	start := time.Now()
	l := e.cur.Load()
	i := pointIndex(point)
	if i < 0 {
		return infertrail.Decision{}, fmt.Errorf("decide: unknown policy point %q: %w", point, infertrail.ErrInvalid)
	}
	p := &l.points[i]
	if !p.defined {
		return infertrail.Decision{Result: infertrail.PolicyAllow, Bundle: l.bundle, EvalTime: time.Since(start)}, nil
	}
	d := infertrail.Decision{PolicyID: p.id, Bundle: l.bundle}
	session, _ := input["session_id"].(string)
	if e.cfg.History && session != "" {
		// A copy: the caller's map is not the engine's to change.
		in := make(map[string]any, len(input)+1)
		for k, v := range input {
			in[k] = v
		}
		in["earlier"] = e.history.get(session)
		input = in
	}
	err := e.decide(ctx, &d, p, input)
	d.EvalTime = time.Since(start)
	if err != nil {
		d.Result, d.Reasons, d.Obligations = "", nil, nil
		return d, fmt.Errorf("decide %s: %w", point, err)
	}
	if e.cfg.History && session != "" {
		e.history.add(session, earlier{point: point, result: d.Result, policyID: d.PolicyID, at: start})
	}
	return d, nil
}

func (e *Engine) decide(ctx context.Context, d *infertrail.Decision, p *prepared, input map[string]any) error {
	digest, in, err := prepareInput(input)
	if err != nil {
		return fmt.Errorf("encode input: %w", err)
	}
	d.InputDigest = digest
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	cache := evalCaches.Get().(*evalCache)
	rs, err := p.query.Eval(ctx, rego.EvalParsedInput(in), rego.EvalTime(e.cfg.Now()),
		rego.EvalMetrics(noMetrics), rego.EvalExternalCancel(cancel), rego.EvalVirtualCache(cache))
	stop()
	cache.release() // rs holds Go values, not the cache's
	if err != nil {
		return fmt.Errorf("%w: data.%s.decision: %w", ErrPolicy, p.id, err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return fmt.Errorf("%w: data.%s.decision is undefined for this input (give it a default)", ErrPolicy, p.id)
	}
	if err := parseDecision(d, rs[0].Expressions[0].Value); err != nil {
		return fmt.Errorf("%w: data.%s.decision %w", ErrPolicy, p.id, err)
	}
	return nil
}

// parseDecision checks the decision object and fills d from it.
func parseDecision(d *infertrail.Decision, v any) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("is %s, want an object with a result", describe(v))
	}
	for k, x := range obj {
		switch k {
		case "result":
			s, _ := x.(string)
			switch r := infertrail.PolicyResult(s); r {
			case infertrail.PolicyAllow, infertrail.PolicyDeny, infertrail.PolicyModify, infertrail.PolicyRequireApproval:
				d.Result = r
			default:
				return fmt.Errorf("result is %s, want allow, deny, modify or require_approval", describe(x))
			}
		case "reasons":
			a, ok := x.([]any)
			if !ok {
				return fmt.Errorf("reasons is %s, want an array of strings", describe(x))
			}
			d.Reasons = make([]string, len(a))
			for j, r := range a {
				s, ok := r.(string)
				if !ok {
					return fmt.Errorf("reasons[%d] is %s, want a string", j, describe(r))
				}
				d.Reasons[j] = s
			}
		case "obligations":
			a, ok := x.([]any)
			if !ok {
				return fmt.Errorf("obligations is %s, want an array", describe(x))
			}
			d.Obligations = make([]json.RawMessage, len(a))
			for j, o := range a {
				b, err := json.Marshal(o)
				if err == nil {
					b, err = infertrail.Canonicalize(b)
				}
				if err != nil {
					return fmt.Errorf("obligations[%d]: %w", j, err)
				}
				d.Obligations[j] = b
			}
		default:
			return fmt.Errorf("has an unknown member %q: want result, reasons and obligations", k)
		}
	}
	if d.Result == "" {
		return errors.New("has no result")
	}
	return nil
}

func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("%q", v)
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case bool:
		return fmt.Sprint(v)
	case json.Number:
		return "the number " + v.String()
	}
	return fmt.Sprintf("a %T", v)
}

// Run checks the folder every Interval until ctx ends, and reloads when the
// names, sizes or modification times of its policy files have changed and
// then stayed the same for one more Interval (so that a folder being
// copied is not loaded half-way). A failed reload is logged and recorded by
// Reload; Run carries on with the last good policy.
func (e *Engine) Run(ctx context.Context) {
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	pending := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fp := fingerprint(e.cfg.Dir)
		e.mu.Lock()
		changed := fp != e.seen
		e.mu.Unlock()
		if !changed {
			pending = ""
			continue
		}
		if fp != pending {
			pending = fp // changed: wait for it to settle
			continue
		}
		pending = ""
		if err := e.Reload(ctx); err != nil && ctx.Err() == nil {
			e.cfg.Logger.Debug("policy reload failed", "dir", e.cfg.Dir, "err", err)
		}
	}
}

// Reload reads and compiles the folder now. If the files are the ones in
// force, it does nothing. On success it records a policy.load access record
// and then puts the new policies in force. If they do not load, it logs the
// error, records a policy.load_failed access record, keeps the policies in
// force, and returns the error, which names the file and line. If the
// record cannot be appended, the new policies are not put in force and Run
// tries again.
func (e *Engine) Reload(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	fp := fingerprint(e.cfg.Dir)
	prev := e.cur.Load()
	prevBundle := ""
	if prev != nil {
		prevBundle = prev.bundle
	}

	files, err := readFolder(e.cfg.Dir)
	bundle, names := digest(files)
	if err == nil && bundle == prevBundle {
		e.seen = fp
		return nil
	}
	var l *loaded
	if err == nil {
		if l, err = e.compile(ctx, files); err == nil {
			l.bundle = bundle
		}
	}
	if err != nil {
		msg := err.Error()
		e.cfg.Logger.Error("policy load failed; the policies in force are kept",
			"dir", e.cfg.Dir, "bundle_attempted", bundle, "bundle", prevBundle, "err", msg)
		attrs := map[string]json.RawMessage{
			"access.action":           infertrail.AppendString(nil, ActionLoadFailed),
			"policy.error":            infertrail.AppendString(nil, truncate(msg, maxErrorLen)),
			"policy.bundle_attempted": infertrail.AppendString(nil, bundle),
			"policy.files":            stringArray(names),
			"policy.file_digests":     fileDigests(files),
			"policy.engine":           infertrail.AppendString(nil, "opa"),
		}
		if prevBundle != "" {
			attrs["policy.bundle"] = infertrail.AppendString(nil, prevBundle)
		}
		if rerr := e.record(ctx, attrs, files); rerr != nil {
			err = errors.Join(err, fmt.Errorf("record the failed load: %w", rerr))
		} else {
			e.seen = fp // recorded: wait for the next change
		}
		return fmt.Errorf("load policies from %s: %w", e.cfg.Dir, err)
	}
	attrs := map[string]json.RawMessage{
		"access.action":       infertrail.AppendString(nil, ActionLoad),
		"policy.bundle":       infertrail.AppendString(nil, bundle),
		"policy.files":        stringArray(names),
		"policy.file_digests": fileDigests(files),
		"policy.engine":       infertrail.AppendString(nil, "opa"),
	}
	if prevBundle != "" {
		attrs["policy.previous_bundle"] = infertrail.AppendString(nil, prevBundle)
	}
	if err := e.record(ctx, attrs, files); err != nil {
		e.cfg.Logger.Error("policy load not recorded; the policies in force are kept",
			"dir", e.cfg.Dir, "bundle_attempted", bundle, "bundle", prevBundle, "err", err)
		return fmt.Errorf("load policies from %s: record the load: %w", e.cfg.Dir, err)
	}
	e.cur.Store(l)
	e.seen = fp
	e.cfg.Logger.Info("policy loaded", "dir", e.cfg.Dir, "bundle", bundle, "previous_bundle", prevBundle,
		"files", names)
	return nil
}

// record appends the access record of a load; the files' text is its
// content, so that the trail keeps each version of the policies.
func (e *Engine) record(ctx context.Context, attrs map[string]json.RawMessage, files []file) error {
	src := map[string]string{}
	for _, f := range files {
		src[f.name] = string(f.data)
	}
	b, err := json.Marshal(src)
	if err != nil {
		return err
	}
	if b, err = infertrail.Canonicalize(b); err != nil {
		return err
	}
	_, err = e.cfg.Recorder.Record(ctx, &infertrail.Record{
		Kind:       infertrail.KindAccess,
		Time:       e.cfg.Now(),
		Tenant:     e.cfg.Tenant,
		Actor:      infertrail.Actor{ID: ActorID, Type: "service"},
		Source:     Source,
		Attributes: attrs,
		Content:    map[string]json.RawMessage{"policy.sources": b},
	})
	return err
}

// file is one policy file as read.
type file struct {
	name string
	data []byte
}

func isPolicyFile(name string) bool {
	return !strings.HasPrefix(name, ".") && (strings.HasSuffix(name, ".rego") || name == DataFile)
}

// readFolder reads the policy files of dir, sorted by name. It returns
// what it could read along with an error.
func readFolder(dir string) ([]file, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []file
	nrego := 0
	for _, ent := range ents {
		if !isPolicyFile(ent.Name()) || ent.IsDir() {
			continue
		}
		path := filepath.Join(dir, ent.Name())
		if fi, err := os.Stat(path); err != nil {
			return files, err
		} else if !fi.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return files, err
		}
		files = append(files, file{ent.Name(), data})
		if strings.HasSuffix(ent.Name(), ".rego") {
			nrego++
		}
	}
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.name, b.name) })
	if nrego == 0 {
		return files, fmt.Errorf("no .rego file in %s", dir)
	}
	return files, nil
}

// fingerprint summarises the names, sizes and modification times of the
// policy files in dir, or the error reading it.
func fingerprint(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	for _, ent := range ents {
		if !isPolicyFile(ent.Name()) {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, ent.Name()))
		if err != nil {
			fmt.Fprintf(&b, "%s error %v\n", ent.Name(), err)
			continue
		}
		fmt.Fprintf(&b, "%s %d %d %v\n", ent.Name(), fi.Size(), fi.ModTime().UnixNano(), fi.Mode())
	}
	return b.String()
}

// digest returns the bundle digest of files (sorted by name) and their
// names.
func digest(files []file) (string, []string) {
	h := sha256.New()
	names := make([]string, len(files))
	for i, f := range files {
		sum := sha256.Sum256(f.data)
		fmt.Fprintf(h, "%x  %s\n", sum, f.name)
		names[i] = f.name
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), names
}

func fileDigests(files []file) json.RawMessage {
	m := map[string]string{}
	for _, f := range files {
		sum := sha256.Sum256(f.data)
		m[f.name] = "sha256:" + hex.EncodeToString(sum[:])
	}
	b, _ := json.Marshal(m)
	b, _ = infertrail.Canonicalize(b)
	return b
}

func stringArray(s []string) json.RawMessage {
	b := []byte{'['}
	for i, v := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b = infertrail.AppendString(b, v)
	}
	return append(b, ']')
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 { // do not cut a UTF-8 sequence
		n--
	}
	return s[:n] + "…"
}

// compile parses and compiles files and prepares each point's query.
func (e *Engine) compile(ctx context.Context, files []file) (*loaded, error) {
	modules := map[string]*ast.Module{}
	data := map[string]any{}
	var errs ast.Errors
	for _, f := range files {
		if f.name == DataFile {
			var v any
			if err := util.NewJSONDecoder(bytes.NewReader(f.data)).Decode(&v); err != nil {
				return nil, fmt.Errorf("%s: %w", f.name, err)
			}
			m, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s: want a JSON object", f.name)
			}
			data = m
			continue
		}
		m, err := ast.ParseModuleWithOpts(f.name, string(f.data), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			var pe ast.Errors
			if errors.As(err, &pe) {
				errs = append(errs, pe...)
				continue
			}
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		if m == nil {
			return nil, fmt.Errorf("%s: no package declaration", f.name)
		}
		modules[f.name] = m
	}
	if len(errs) > 0 {
		return nil, errs
	}
	c := ast.NewCompiler().
		WithDefaultRegoVersion(ast.RegoV1).
		WithEnablePrintStatements(true)
	if c.Compile(modules); c.Failed() {
		return nil, c.Errors
	}
	// data came from JSON: it needs no round trip, and converting it to
	// Rego values once spares each evaluation that reads it.
	store := inmem.NewFromObjectWithOpts(data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	l := &loaded{}
	for i, pt := range points {
		id := PackageOf(pt)
		query := "data." + id + ".decision"
		ref := ast.MustParseRef(query)
		p := prepared{id: id, defined: len(c.GetRulesForVirtualDocument(ref)) > 0 || inData(data, ref)}
		if p.defined {
			pq, err := rego.New(
				rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(ref)))),
				rego.Compiler(c),
				rego.Store(store),
				rego.PrintHook(printHook{e.cfg.Logger}),
				rego.EnablePrintStatements(true),
			).PrepareForEval(ctx)
			if err != nil {
				return nil, fmt.Errorf("prepare %s: %w", query, err)
			}
			p.query = pq
		}
		l.points[i] = p
	}
	return l, nil
}

// inData reports whether the data document holds something at ref.
func inData(data map[string]any, ref ast.Ref) bool {
	var v any = data
	for _, t := range ref[1:] {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		s, ok := t.Value.(ast.String)
		if !ok {
			return false
		}
		if v, ok = m[string(s)]; !ok {
			return false
		}
	}
	return true
}

// printHook logs the policies' print() output.
type printHook struct{ log *slog.Logger }

func (h printHook) Print(ctx print.Context, msg string) error {
	loc := ""
	if ctx.Location != nil {
		loc = fmt.Sprintf("%s:%d", ctx.Location.File, ctx.Location.Row)
	}
	h.log.Debug("policy print", "location", loc, "print", msg)
	return nil
}
