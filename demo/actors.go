package demo

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/openai/openaitest"
	"github.com/infertrail/infertrail/client"
)

// Tenant is the tenant of every demo record.
const Tenant = "demo"

// ToolsServer is the name the MCP tool server has in the server's
// configuration: agents reach it at /mcp/demo-tools.
const ToolsServer = "demo-tools"

// Model is the model version the scripted upstream answers as.
const Model = "gpt-4o-2024-08-06"

// The agents, and the identities the other actors act as. Every id says
// "demo".
const (
	financeBot = "demo-agent:finance-bot"
	opsBot     = "demo-agent:ops-bot"
	supportBot = "demo-agent:support-bot"
	redTeam    = "demo-agent:red-team"
)

// Agent is a demo agent: a virtual key of the LLM gateway, and the name of
// the API token it presents to the MCP gateway.
type Agent struct {
	Name        string // the virtual key's name, such as demo-finance-bot
	ID          string // the agent id the gateway records as actor.id
	Owner       string // the person it acts for (actor.on_behalf_of)
	Key         string // the virtual key the agent presents as its API key
	UpstreamKey string // the provider key the gateway sends upstream for it
}

// Actors are the demo's scripted actors, each serving on its own loopback
// port: a model upstream in OpenAI's wire format, an MCP tool server, and
// the services behind the tools (a secrets vault, a payments API, a deploy
// API and a CRM). Start them, configure the server with their URLs and
// Agents, and Run the scenarios against it.
type Actors struct {
	// ModelURL is the model upstream's base URL, as OpenAI SDKs take it
	// (ending in /v1): the server's gateway.openai.upstream.
	ModelURL string
	// ToolsURL is the MCP tool server's Streamable HTTP endpoint: the URL
	// of the server's mcp.servers entry named ToolsServer.
	ToolsURL string
	// ServicesURL is the base URL of the vault, payments, deploy and CRM
	// APIs.
	ServicesURL string
	// Agents are the agents' virtual keys: the server's
	// gateway.virtual_keys, each in tenant Tenant.
	Agents []Agent

	model    *model
	tools    *tracing // the tool server's OpenTelemetry instrumentation
	app      *tracing // the support agent's
	servers  []*http.Server
	fpKey    []byte // keys the credential fingerprints the vault and the deploy API record
	wired    atomic.Pointer[wiring]
	vaultMu  sync.Mutex
	tokens   map[string]*claims // the vault's tokens
	captured *http.Request      // the deploy request a network tap saw, for the replay
	capBody  []byte
}

// wiring is what the actors learn once the server runs.
type wiring struct {
	vault, deployAPI *client.Recorder // native ingest, with ingest tokens
}

// claims are what a token issued by the demo vault stands for.
type claims struct {
	subject     string
	expiry      time.Time
	fingerprint string
	record      infertrail.UUID // the credential record of its issuance
	revoked     bool
}

// Start starts the actors on loopback ports. Close stops them.
func Start(ctx context.Context) (*Actors, error) {
	a := &Actors{model: &model{replies: map[string]*openaitest.Upstream{}}, fpKey: randomBytes(32), tokens: map[string]*claims{}}
	for _, ag := range []struct{ name, id, owner string }{
		{"demo-finance-bot", financeBot, "demo-user:alice@example.com"},
		{"demo-ops-bot", opsBot, "demo-team:platform"},
		{"demo-support-bot", supportBot, "demo-user:bob@example.com"},
		{"demo-red-team", redTeam, "demo-team:security"},
	} {
		a.Agents = append(a.Agents, Agent{Name: ag.name, ID: ag.id, Owner: ag.owner,
			Key: "demo-vk-" + randomHex(16), UpstreamKey: "demo-upstream-" + randomHex(16)})
	}
	a.tools, a.app = newTracing("demo-tools"), newTracing("demo-support-agent")
	base, err := a.listen(a.model)
	if err != nil {
		return nil, err
	}
	a.ModelURL = base + "/v1"
	srv := a.toolServer()
	if base, err = a.listen(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return srv }, nil)); err != nil {
		a.Close()
		return nil, err
	}
	a.ToolsURL = base + "/mcp"
	if a.ServicesURL, err = a.listen(a.services()); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// listen serves h on a new loopback port and returns its base URL.
func (a *Actors) listen(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("start demo actor: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	a.servers = append(a.servers, srv)
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), nil
}

// Close stops the actors.
func (a *Actors) Close() error {
	var errs []error
	for _, s := range a.servers {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// agent returns the agent of an id.
func (a *Actors) agent(id string) Agent {
	for _, ag := range a.Agents {
		if ag.ID == id {
			return ag
		}
	}
	panic("demo: no agent " + id)
}

// wire connects the actors that record to the server: the vault and the
// deploy API through native ingest, the instrumented processes through
// OTLP, each with its own ingest token.
func (a *Actors) wire(ctx context.Context, serverURL string, tokens map[string]string) error {
	w := &wiring{}
	var err error
	if w.vault, err = client.New(client.Config{URL: serverURL, Token: tokens[vaultToken]}); err != nil {
		return err
	}
	if w.deployAPI, err = client.New(client.Config{URL: serverURL, Token: tokens[deployToken]}); err != nil {
		return err
	}
	for _, t := range []*tracing{a.tools, a.app} {
		if err := t.connect(ctx, serverURL, tokens[otelToken]); err != nil {
			return err
		}
	}
	a.wired.Store(w)
	return nil
}

// model is the scripted model upstream: capture/openai/openaitest speaks
// OpenAI's wire format, and each agent (told apart by the provider key the
// gateway sends for it) gets the reply its scenario scripted last.
type model struct {
	mu      sync.Mutex
	replies map[string]*openaitest.Upstream
}

// script sets the next replies to an agent.
func (m *model) script(ag Agent, up *openaitest.Upstream) {
	if up.Model == "" {
		up.Model = Model
	}
	if up.SystemFingerprint == "" {
		up.SystemFingerprint = "fp_demo"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.replies[ag.UpstreamKey] = up
}

func (m *model) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	m.mu.Lock()
	up := m.replies[key]
	m.mu.Unlock()
	if up == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"message":"Incorrect API key provided (demo upstream).","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`)
		return
	}
	up.ServeHTTP(w, r)
}

// The tool server's tools' arguments.
type (
	payArgs struct {
		Invoice   string  `json:"invoice" jsonschema:"the invoice number"`
		AmountEUR float64 `json:"amount_eur" jsonschema:"the amount in EUR"`
		Creditor  string  `json:"creditor" jsonschema:"who is paid"`
	}
	deployArgs struct {
		Service     string `json:"service"`
		Version     string `json:"version"`
		Environment string `json:"environment"`
	}
	orderArgs struct {
		Order string `json:"order"`
	}
	secretArgs struct {
		Name string `json:"name"`
	}
)

// toolServer is the MCP tool server, built with the official Go SDK.
func (a *Actors) toolServer() *sdk.Server {
	s := sdk.NewServer(&sdk.Implementation{Name: "demo-tools", Version: "1.0.0"}, nil)
	sdk.AddTool(s, &sdk.Tool{Name: "pay", Description: "Pay a supplier invoice"}, func(ctx context.Context, req *sdk.CallToolRequest, in payArgs) (*sdk.CallToolResult, any, error) {
		id, err := a.pay(ctx, req.Params.Meta, in)
		if err != nil {
			return nil, nil, err
		}
		return textResult("Paid %s: %.2f EUR to %s (payment %s, scheduled).", in.Invoice, in.AmountEUR, in.Creditor, id), nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "deploy", Description: "Deploy a service version to an environment"}, func(ctx context.Context, req *sdk.CallToolRequest, in deployArgs) (*sdk.CallToolResult, any, error) {
		id, err := a.deploy(ctx, req.Params.Meta, in)
		if err != nil {
			return nil, nil, err
		}
		return textResult("Deployment %s of %s %s to %s started.", id, in.Service, in.Version, in.Environment), nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "lookup_order", Description: "Look up an order's shipping status"}, func(_ context.Context, _ *sdk.CallToolRequest, in orderArgs) (*sdk.CallToolResult, any, error) {
		return textResult("Order %s: delivered on Monday, signed for by the customer's front desk.", in.Order), nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "read_secret", Description: "Read a secret from the secrets store"}, func(_ context.Context, _ *sdk.CallToolRequest, in secretArgs) (*sdk.CallToolResult, any, error) {
		return textResult("secret %q: ******** (the demo never hands out secrets)", in.Name), nil, nil
	})
	return s
}

func textResult(format string, args ...any) *sdk.CallToolResult {
	return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: fmt.Sprintf(format, args...)}}}
}

// traceparent is the W3C trace context an agent passed in a tool call's
// _meta, as docs/mcp.md asks.
func traceparent(meta sdk.Meta) string {
	s, _ := meta["traceparent"].(string)
	return s
}

// pay pays an invoice through the payments API. The tool server is
// instrumented with OpenTelemetry: the payment request is a client span,
// a child of the caller's trace context, tagged with the tool call that
// made it, and exported over OTLP before the tool answers.
func (a *Actors) pay(ctx context.Context, meta sdk.Meta, in payArgs) (string, error) {
	parent := propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent(meta)})
	target := a.ServicesURL + "/payments/v2/payments"
	callID, _ := meta["io.infertrail/tool_call_id"].(string)
	spanCtx, span := a.tools.tracer.Start(parent, "POST /payments/v2/payments", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(httpAttributes(http.MethodPost, target)...),
		trace.WithAttributes(attribute.String("gen_ai.tool.name", "pay"), attribute.String("gen_ai.tool.call.id", callID)))
	var out struct {
		ID string `json:"id"`
	}
	status, err := postJSON(spanCtx, target, nil, map[string]any{"invoice": in.Invoice, "creditor": in.Creditor,
		"amount": map[string]any{"currency": "EUR", "value": fmt.Sprintf("%.2f", in.AmountEUR)}}, &out)
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	span.End()
	if err != nil {
		return "", fmt.Errorf("payments API: %w", err)
	}
	if err := a.tools.flush(ctx); err != nil {
		return "", fmt.Errorf("export the payment span: %w", err)
	}
	return out.ID, nil
}

// deploy triggers a deployment with a short-lived token from the vault,
// which it revokes once the deployment has started. It passes the
// caller's trace context on to the vault and the deploy API, which record
// what they see through native ingest.
func (a *Actors) deploy(ctx context.Context, meta sdk.Meta, in deployArgs) (string, error) {
	tp := traceparent(meta)
	hdr := http.Header{"Traceparent": {tp}}
	var tok struct {
		Token string `json:"token"`
	}
	if _, err := postJSON(ctx, a.ServicesURL+"/vault/v1/tokens", hdr, map[string]any{"subject": opsBot, "scopes": []string{"deploy:write"}, "ttl_seconds": 300}, &tok); err != nil {
		return "", fmt.Errorf("vault: %w", err)
	}
	body, _ := json.Marshal(map[string]any{"service": in.Service, "version": in.Version, "environment": in.Environment})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.ServicesURL+"/deploy/v1/deployments", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("Traceparent", tp)
	// A tap on the network keeps a copy of the request: the scenario
	// replays it later.
	a.vaultMu.Lock()
	a.captured, a.capBody = req.Clone(context.Background()), body
	a.vaultMu.Unlock()
	var out struct {
		ID string `json:"id"`
	}
	if err := do(req, &out); err != nil {
		return "", fmt.Errorf("deploy API: %w", err)
	}
	if _, err := postJSON(ctx, a.ServicesURL+"/vault/v1/revoke", hdr, map[string]any{"token": tok.Token, "reason": "released after use"}, nil); err != nil {
		return "", fmt.Errorf("vault: %w", err)
	}
	return out.ID, nil
}

// replay sends the captured deploy request again, verbatim: same token,
// same headers, same body. It returns the deploy API's status.
func (a *Actors) replay(ctx context.Context) (int, error) {
	a.vaultMu.Lock()
	captured, body := a.captured, a.capBody
	a.vaultMu.Unlock()
	if captured == nil {
		return 0, errors.New("replay: no request was captured")
	}
	req := captured.Clone(ctx)
	req.Body = io.NopCloser(bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// exportCustomers is the support agent's process calling the CRM's export
// endpoint on its own. Its OpenTelemetry instrumentation tags every span
// with the conversation, and exports this one over OTLP.
func (a *Actors) exportCustomers(ctx context.Context, traceID, parentSpan, conversation string) error {
	parent := propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": "00-" + traceID + "-" + parentSpan + "-01"})
	target := a.ServicesURL + "/crm/v1/customers/export"
	spanCtx, span := a.app.tracer.Start(parent, "POST /crm/v1/customers/export", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(httpAttributes(http.MethodPost, target)...),
		trace.WithAttributes(attribute.String("gen_ai.conversation.id", conversation)))
	status, err := postJSON(spanCtx, target, nil, map[string]any{"segment": "all", "format": "csv"}, nil)
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	span.End()
	if err != nil {
		return fmt.Errorf("CRM: %w", err)
	}
	return a.app.flush(ctx)
}

// httpAttributes are the OpenTelemetry HTTP client attributes of a call.
func httpAttributes(method, target string) []attribute.KeyValue {
	host, port := hostPort(target)
	return []attribute.KeyValue{attribute.String("http.request.method", method), attribute.String("url.full", target),
		attribute.String("server.address", host), attribute.Int("server.port", port)}
}

// hostPort returns the host and port of a URL of the demo's services.
func hostPort(target string) (string, int) {
	u, err := url.Parse(target)
	if err != nil {
		return "", 0
	}
	port, _ := strconv.Atoi(u.Port())
	return u.Hostname(), port
}

// services serves the APIs behind the tools.
func (a *Actors) services() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /payments/v2/payments", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusCreated, map[string]any{"id": "pay_" + randomHex(6), "status": "scheduled"})
	})
	mux.HandleFunc("POST /crm/v1/customers/export", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"rows": 1842, "format": "csv"})
	})
	mux.HandleFunc("POST /vault/v1/tokens", a.issue)
	mux.HandleFunc("POST /vault/v1/revoke", a.revoke)
	mux.HandleFunc("POST /deploy/v1/deployments", a.deployments)
	return mux
}

// fingerprint is the keyed fingerprint of a token that the vault and the
// deploy API record: never the token itself.
func (a *Actors) fingerprint(token string) string {
	m := hmac.New(sha256.New, a.fpKey)
	m.Write([]byte(token))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

// traceOf returns the trace id and the caller's span of a request's W3C
// traceparent header, or a new trace.
func traceOf(r *http.Request) (traceID, parent string) {
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
	if !sc.IsValid() {
		return randomHex(16), ""
	}
	return sc.TraceID().String(), sc.SpanID().String()
}

// issue is the vault issuing a short-lived token, recorded as a credential
// record: its fingerprint, subject and expiry, never the token.
func (a *Actors) issue(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Subject string   `json:"subject"`
		Scopes  []string `json:"scopes"`
		TTL     int      `json:"ttl_seconds"`
	}
	if json.NewDecoder(r.Body).Decode(&req) != nil || req.Subject == "" || req.TTL <= 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want subject, scopes and ttl_seconds"})
		return
	}
	now := time.Now().UTC()
	token := "dvt_" + randomHex(24)
	c := &claims{subject: req.Subject, expiry: now.Add(time.Duration(req.TTL) * time.Second), fingerprint: a.fingerprint(token), record: infertrail.NewUUID()}
	traceID, parent := traceOf(r)
	scopes, _ := json.Marshal(req.Scopes)
	rec := &infertrail.Record{ID: c.record, Kind: infertrail.KindCredential, Time: now, Tenant: Tenant,
		Actor:   infertrail.Actor{ID: req.Subject, Type: "agent", CredentialFingerprint: c.fingerprint},
		TraceID: traceID, SpanID: randomHex(8), ParentSpanID: parent,
		Attributes: attrs("credential.event", "issued", "credential.type", "bearer_token", "credential.issuer", "demo-vault",
			"credential.subject", req.Subject, "credential.audience", a.ServicesURL+"/deploy", "credential.scopes", json.RawMessage(scopes),
			"credential.ttl_seconds", req.TTL, "credential.expiry_time", c.expiry.Format(time.RFC3339Nano))}
	if err := a.record(r.Context(), true, rec); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	a.vaultMu.Lock()
	a.tokens[token] = c
	a.vaultMu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{"token": token, "expires": c.expiry})
}

// revoke is the vault revoking a token, recorded as a credential record
// that follows its issuance.
func (a *Actors) revoke(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token, Reason string
	}
	json.NewDecoder(r.Body).Decode(&req)
	a.vaultMu.Lock()
	c := a.tokens[req.Token]
	if c != nil {
		c.revoked = true
	}
	a.vaultMu.Unlock()
	if c == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown token"})
		return
	}
	traceID, parent := traceOf(r)
	rec := &infertrail.Record{Kind: infertrail.KindCredential, Time: time.Now().UTC(), Tenant: Tenant,
		Actor:   infertrail.Actor{ID: c.subject, Type: "agent", CredentialFingerprint: c.fingerprint},
		TraceID: traceID, SpanID: randomHex(8), ParentSpanID: parent,
		Links: []infertrail.Link{{Rel: "follows", ID: c.record}},
		Attributes: attrs("credential.event", "revoked", "credential.type", "bearer_token", "credential.issuer", "demo-vault",
			"credential.subject", c.subject, "credential.revocation_reason", req.Reason)}
	if err := a.record(r.Context(), true, rec); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"revoked": true})
}

// deployments is the deploy API. It checks tokens offline, as with a JWT:
// issued by the vault, not expired. It never hears of a revocation. Each
// call it serves is recorded as a downstream_call with the fingerprint of
// the token presented, before it answers.
func (a *Actors) deployments(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	a.vaultMu.Lock()
	c := a.tokens[token]
	a.vaultMu.Unlock()
	status, answer := http.StatusCreated, map[string]any{"id": "dep_" + randomHex(6), "status": "started"}
	if c == nil || time.Now().After(c.expiry) {
		status, answer = http.StatusUnauthorized, map[string]any{"error": "invalid or expired token"}
	}
	traceID, parent := traceOf(r)
	target := a.ServicesURL + r.URL.Path
	host, port := hostPort(target)
	rec := &infertrail.Record{Kind: infertrail.KindDownstreamCall, Time: time.Now().UTC(), Tenant: Tenant,
		TraceID: traceID, SpanID: randomHex(8), ParentSpanID: parent,
		Attributes: attrs("http.request.method", r.Method, "url.full", target, "server.address", host, "server.port", port,
			"http.response.status_code", status),
		Content: map[string]json.RawMessage{"http.request.body": jsonOrString(body), "http.response.body": mustJSON(answer)}}
	if c != nil {
		rec.Actor = infertrail.Actor{ID: c.subject, Type: "agent", CredentialFingerprint: c.fingerprint}
		rec.Links = []infertrail.Link{{Rel: "uses", ID: c.record}}
	} else if token != "" {
		rec.Actor = infertrail.Actor{CredentialFingerprint: a.fingerprint(token)}
	}
	if err := a.record(r.Context(), false, rec); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, status, answer)
}

// record hands a record to the server through native ingest: as the vault,
// or as the deploy API. Every record says it is demo data.
func (a *Actors) record(ctx context.Context, vault bool, rec *infertrail.Record) error {
	w := a.wired.Load()
	if w == nil {
		return errors.New("the demo actors are not connected to a server")
	}
	rec.Attributes["deployment.environment.name"] = json.RawMessage(`"demo"`)
	rc := w.deployAPI
	if vault {
		rc = w.vault
	}
	_, err := rc.Record(ctx, rec)
	return err
}

// tracing is one process's OpenTelemetry instrumentation: spans are kept
// as they end, and flush exports them over OTLP/HTTP to the server, so
// that an export error reaches the caller instead of a log.
type tracing struct {
	tracer   trace.Tracer
	buf      *spanBuffer
	mu       sync.Mutex
	exporter sdktrace.SpanExporter // set by connect
}

func newTracing(service string) *tracing {
	res := resource.NewSchemaless(attribute.String("service.name", service), attribute.String("deployment.environment.name", "demo"))
	t := &tracing{buf: &spanBuffer{}}
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSpanProcessor(t.buf))
	t.tracer = tp.Tracer("github.com/infertrail/infertrail/demo")
	return t
}

func (t *tracing) connect(ctx context.Context, serverURL, token string) error {
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(serverURL+"/v1/traces"),
		otlptracehttp.WithHeaders(map[string]string{"Authorization": "Bearer " + token}),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}), otlptracehttp.WithTimeout(20*time.Second))
	if err != nil {
		return fmt.Errorf("OTLP exporter: %w", err)
	}
	t.mu.Lock()
	t.exporter = exp
	t.mu.Unlock()
	return nil
}

// flush exports the spans that ended; the server answers once they are
// durable.
func (t *tracing) flush(ctx context.Context) error {
	t.mu.Lock()
	exp := t.exporter
	t.mu.Unlock()
	if exp == nil {
		return errors.New("the demo actors are not connected to a server")
	}
	return exp.ExportSpans(ctx, t.buf.take())
}

// spanBuffer is a span processor that keeps the spans that ended.
type spanBuffer struct {
	mu    sync.Mutex
	ended []sdktrace.ReadOnlySpan
}

func (b *spanBuffer) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (b *spanBuffer) OnEnd(s sdktrace.ReadOnlySpan) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ended = append(b.ended, s)
}

func (b *spanBuffer) take() []sdktrace.ReadOnlySpan {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.ended
	b.ended = nil
	return out
}

func (b *spanBuffer) Shutdown(context.Context) error   { return nil }
func (b *spanBuffer) ForceFlush(context.Context) error { return nil }

// postJSON posts a JSON body with the trace context of ctx (and extra
// headers) and decodes the answer into out, if not nil. It returns the
// status.
func postJSON(ctx context.Context, target string, hdr http.Header, body, out any) (int, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s: %w", target, err)
		}
	}
	return resp.StatusCode, nil
}

// do sends a request and decodes its JSON answer.
func do(req *http.Request, out any) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(data))
	}
	return json.Unmarshal(data, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// attrs builds record attributes from name, value pairs.
func attrs(kv ...any) map[string]json.RawMessage {
	m := make(map[string]json.RawMessage, len(kv)/2+1)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = mustJSON(kv[i+1])
	}
	return m
}

func mustJSON(v any) json.RawMessage {
	if raw, ok := v.(json.RawMessage); ok {
		return raw
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// jsonOrString is a body as JSON, or as a JSON string when it is not JSON.
func jsonOrString(b []byte) json.RawMessage {
	if json.Valid(b) && len(bytes.TrimSpace(b)) > 0 {
		return bytes.Clone(b)
	}
	return mustJSON(string(b))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func randomHex(n int) string { return hex.EncodeToString(randomBytes(n)) }
