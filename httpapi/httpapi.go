// Package httpapi serves InferTrail's HTTP API: native ingest, records,
// proofs, the C2SP tlog-tiles endpoints, and health and metrics.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/approvals"
	"github.com/infertrail/infertrail/export"
	"github.com/infertrail/infertrail/internal/quiet"
	"github.com/infertrail/infertrail/investigate"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/redact"
)

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	Log         *ledger.Log // required
	VerifierKey string      // the log's verifier key in note format, for /v1/log
	// MaxBodyBytes bounds a request body (default 64 MiB).
	MaxBodyBytes int64
	// MaxBatch bounds the records in one ingest request (default 10,000).
	MaxBatch int
	Limits   infertrail.Limits
	Logger   *slog.Logger          // default slog.Default()
	Gatherer prometheus.Gatherer   // what /metrics serves; default prometheus.DefaultGatherer
	Registry prometheus.Registerer // where the API registers its own metrics; nil: none
	Now      func() time.Time
	// Auth authenticates callers (Authorization: Bearer …). Nil turns
	// authentication off: every caller may do anything, in every tenant —
	// for a server that only loopback clients reach, or behind a proxy
	// that authenticates.
	Auth infertrail.Authenticator
	// Tokens manages API tokens for /v1/tokens; nil answers 503 there.
	Tokens *access.Tokens
	// RequireReason refuses content reads without an X-InferTrail-Reason.
	RequireReason bool
	// Fingerprinter computes credential fingerprints for
	// POST /v1/fingerprints; it must be keyed as the capture paths' are.
	Fingerprinter *redact.Fingerprinter
	// Investigate answers queries, timelines and detection; nil answers
	// 503 there.
	Investigate *investigate.Engine
	// Controls maps the compliance report's sections to controls (default:
	// the built-in mapping).
	Controls *export.Controls
	// Approvals lists approvals and takes approvers' decisions for
	// /v1/approvals: the service the gateways hold calls with. Nil
	// answers 503 there.
	Approvals *approvals.Service
}

// Server is the HTTP API. It is an http.Handler.
type Server struct {
	cfg     Config
	log     *ledger.Log
	mux     *http.ServeMux
	m       *metrics
	refused quiet.Run // 503s, logged a line every 10 s while they go on
}

type metrics struct {
	requests *prometheus.CounterVec
	ingested prometheus.Counter
}

// New returns the API over cfg.Log.
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		return nil, errors.New("new http api: Log is required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 20
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 10000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.DefaultGatherer
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Controls == nil {
		c, err := export.LoadControls("")
		if err != nil {
			return nil, fmt.Errorf("new http api: %w", err)
		}
		cfg.Controls = &c
	}
	s := &Server{cfg: cfg, log: cfg.Log, mux: http.NewServeMux()}
	if cfg.Registry != nil {
		s.m = &metrics{
			requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infertrail_http_requests_total",
				Help: "HTTP requests by route and status code."}, []string{"route", "code"}),
			ingested: prometheus.NewCounter(prometheus.CounterOpts{Name: "infertrail_ingest_records_total",
				Help: "Records acknowledged through POST /v1/records, duplicates included."}),
		}
		cfg.Registry.MustRegister(s.m.requests, s.m.ingested)
	}
	for _, rt := range Routes {
		h := rt.handler
		s.mux.Handle(rt.Pattern, s.instrument(rt.Pattern, s.authorize(rt, func(w http.ResponseWriter, r *http.Request) { h(s, w, r) })))
	}
	return s, nil
}

// Route is one endpoint of the API.
type Route struct {
	Pattern string                // net/http ServeMux pattern
	Perm    infertrail.Permission // what the caller needs; 0: public
	Doc     string
	// Variants are forms of the request that need more than Perm.
	Variants []Variant
	handler  func(*Server, http.ResponseWriter, *http.Request)
}

// Variant is a form of a route's request that needs another permission,
// or a caller that reaches every tenant.
type Variant struct {
	Path       string // a path the pattern matches, with {seq} for a record of the tenant under test
	Query      string
	Perm       infertrail.Permission
	AllTenants bool
}

// Routes lists every endpoint with what it needs; the authorization
// matrix test walks it, so that no route escapes it.
var Routes = []Route{
	{"POST /v1/records", infertrail.PermIngest, "append records (JSON array or NDJSON) in the caller's tenant; answers once they are durable", nil, (*Server).ingest},
	{"GET /v1/records/{seq}", infertrail.PermRead, "one record's leaf; with ?content=true its content too (investigators; the read is itself recorded)",
		[]Variant{{Query: "content=true", Perm: infertrail.PermRead | infertrail.PermContent}}, (*Server).record},
	{"GET /v1/records/{seq}/proof", infertrail.PermRead, "inclusion proof of a record to a signed checkpoint (?tree_size=N)", nil, (*Server).proof},
	{"GET /v1/records/{seq}/receipt", infertrail.PermRead, "C2SP tlog-proof receipt for a record", nil, (*Server).receipt},
	{"GET /v1/consistency", infertrail.PermRead, "consistency proof between two tree sizes (?from=N&to=M)", nil, (*Server).consistency},
	{"GET /v1/log", infertrail.PermRead, "origin, verifier key, tree size and latest checkpoint", nil, (*Server).logInfo},
	{"GET /checkpoint", infertrail.PermRead, "the latest signed checkpoint (C2SP tlog-checkpoint)", nil, (*Server).checkpoint},
	{"GET /tile/", infertrail.PermRead, "C2SP tlog-tiles hash tiles; entry bundles (every tenant's leaves) for callers that reach every tenant",
		[]Variant{{Path: "/tile/entries/000.p/1", Perm: infertrail.PermRead, AllTenants: true}}, (*Server).tile},
	{"GET /v1/records", infertrail.PermRead, "query records, newest first: ?from ?to ?tenant ?kind ?actor ?session ?trace ?model ?tool ?tool_call ?decision ?finding ?credential ?link ?cursor ?limit; ?q full-text search (investigators; recorded)",
		[]Variant{{Query: "q=payment", Perm: infertrail.PermRead | infertrail.PermContent}}, (*Server).records},
	{"GET /v1/traces/{id}", infertrail.PermRead, "a trace as a timeline tree, with each record's verification status and findings", nil, timelineOf(infertrail.IndexTrace)},
	{"GET /v1/sessions/{id}", infertrail.PermRead, "a session as a timeline tree, with each record's verification status and findings", nil, timelineOf(infertrail.IndexSession)},
	{"GET /v1/findings", infertrail.PermRead, "detector findings, newest first: ?detector ?subject ?seq ?tenant ?cursor ?limit", nil, (*Server).findings},
	{"POST /v1/detect", infertrail.PermRead, "run the detectors over a trace or session now (?trace or ?session, ?window)", nil, (*Server).detect},
	{"GET /v1/approvals", infertrail.PermRead, "calls held for approval, newest first: ?status=pending|approved|rejected|expired|cancelled ?tenant ?limit", nil, (*Server).listApprovals},
	{"GET /v1/approvals/{id}", infertrail.PermRead, "one approval: what waits (a summary, never content), its deadline, and who decided", nil, (*Server).getApproval},
	{"POST /v1/approvals/{id}", infertrail.PermApprove, "decide on a held call: {\"decision\": \"approved\" or \"rejected\", \"rationale\": …}; the approval record is appended before the decision takes effect", nil, (*Server).decideApproval},
	{"GET /v1/export", infertrail.PermExport, "an evidence bundle (zip) of ?seq=N,M…, ?trace=, ?session= or the filters of GET /v1/records; ?content=true reveals content (investigators); recorded",
		[]Variant{{Query: "content=true", Perm: infertrail.PermExport | infertrail.PermContent}}, (*Server).exportBundle},
	{"GET /v1/report", infertrail.PermRead, "the compliance report of ?from to ?to (RFC 3339; default the last 30 days), ?format=json|html, over the caller's tenant (?tenant=; every tenant for a caller that reaches all); recorded",
		nil, (*Server).report},
	{"POST /v1/erasures", infertrail.PermErase, "crypto-shred a scope's content and append the erasure record", nil, (*Server).erase},
	{"GET /v1/holds", infertrail.PermAdmin, "legal holds (?tenant=T, ?all=true for released ones too)", nil, (*Server).listHolds},
	{"POST /v1/holds", infertrail.PermAdmin, "place a legal hold on a scope (recorded)", nil, (*Server).addHold},
	{"POST /v1/holds/{id}/release", infertrail.PermAdmin, "release a legal hold (recorded)", nil, (*Server).releaseHold},
	{"POST /v1/fingerprints", infertrail.PermRead, "the keyed fingerprint of a credential, and the records that carry it (recorded)", nil, (*Server).fingerprint},
	{"GET /v1/tokens", infertrail.PermAdmin, "API tokens of the caller's tenants (never their secrets)", nil, (*Server).listTokens},
	{"POST /v1/tokens", infertrail.PermAdmin, "create an API token; the answer holds its secret, once (recorded)", nil, (*Server).createToken},
	{"POST /v1/tokens/{id}/revoke", infertrail.PermAdmin, "revoke an API token, at once on every node (recorded)", nil, (*Server).revokeToken},
	{"GET /healthz", 0, "the process is up", nil, (*Server).healthz},
	{"GET /readyz", 0, "the store answers", nil, (*Server).readyz},
	{"GET /metrics", infertrail.PermMetrics, "Prometheus metrics", nil, (*Server).metrics},
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) instrument(route string, h http.HandlerFunc) http.Handler {
	if s.m == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		s.m.requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
	})
}

// apiError is the body of every error response.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Record  *int   `json:"record,omitempty"`
	Field   string `json:"field,omitempty"`
}

// writeError maps an error to its HTTP status: the one place that does.
// Internal errors are logged here, once, and shown as "internal error".
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code := http.StatusInternalServerError, "internal"
	var fe *infertrail.FieldError
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, errIndexBehind):
		s.cfg.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]apiError{"error": {Code: "index_unavailable", Message: errIndexBehind.Error()}})
		return
	case errors.As(err, &mbe) || errors.Is(err, infertrail.ErrTooLarge):
		status, code = http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, infertrail.ErrHeld):
		status, code = http.StatusConflict, "held"
	case errors.Is(err, infertrail.ErrConflict):
		status, code = http.StatusConflict, "conflict"
	case errors.Is(err, infertrail.ErrUnauthenticated):
		status, code = http.StatusUnauthorized, "unauthenticated"
		unauthorizedHeaders(w, err)
	case errors.Is(err, infertrail.ErrForbidden):
		status, code = http.StatusForbidden, "forbidden"
	case errors.Is(err, infertrail.ErrRateLimited):
		status, code = http.StatusTooManyRequests, "rate_limited"
		unauthorizedHeaders(w, err)
	case errors.Is(err, infertrail.ErrInvalid):
		status, code = http.StatusBadRequest, "invalid"
	case errors.Is(err, errUnsupportedMedia):
		status, code = http.StatusUnsupportedMediaType, "unsupported_media_type"
	case errors.Is(err, infertrail.ErrNotFound):
		status, code = http.StatusNotFound, "not_found"
	case errors.Is(err, infertrail.ErrStorageFull):
		// Full disks are freed by people, not in a second.
		status, code = http.StatusServiceUnavailable, "storage_full"
		w.Header().Set("Retry-After", "10")
	case errors.Is(err, infertrail.ErrStorageFailed):
		// So are failed disks.
		status, code = http.StatusServiceUnavailable, "storage_failed"
		w.Header().Set("Retry-After", "10")
	case errors.Is(err, infertrail.ErrPushback), errors.Is(err, infertrail.ErrUnavailable):
		status, code = http.StatusServiceUnavailable, "unavailable"
		w.Header().Set("Retry-After", "1")
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		status, code = 499, "canceled" // the client went away; nobody reads this
	case errors.Is(err, context.DeadlineExceeded):
		status, code = http.StatusServiceUnavailable, "timeout"
		w.Header().Set("Retry-After", "1")
	}
	body := apiError{Code: code, Message: err.Error()}
	if errors.As(err, &fe) {
		if fe.Record >= 0 {
			body.Record = &fe.Record
		}
		body.Field = fe.Field
	}
	if mbe != nil {
		body.Message = fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)
	}
	switch {
	case status == http.StatusInternalServerError:
		s.cfg.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		body.Message = "internal error"
	case status == http.StatusServiceUnavailable:
		// While the store is down or full, every request is refused
		// alike: the first is logged, then a line every 10 s.
		s.refused.Log(s.cfg.Logger, slog.LevelWarn, "request refused", "method", r.Method, "path", r.URL.Path, "err", err)
		// The details (the folder, its free space, the error) are
		// the operator's, in the log.
		switch code {
		case "storage_full":
			body.Message = "the audit trail's storage is full: nothing of this request was stored; retry once space is freed"
		case "storage_failed":
			body.Message = "the audit trail's storage failed a write (an I/O error, or its file system went read-only): nothing of this request was stored; retry once it is repaired"
		}
	}
	writeJSON(w, status, map[string]apiError{"error": body})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	// No HTML escaping: a leaf (json.RawMessage) must be served byte for
	// byte as it is hashed, and RFC 8785 does not escape <, >, & or U+2028.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // Encode adds the trailing newline
		http.Error(w, `{"error":{"code":"internal","message":"internal error"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.log.TreeSize(ctx); err != nil {
		s.writeError(w, r, fmt.Errorf("store: %w: %w", infertrail.ErrUnavailable, err))
		return
	}
	// Nor does a node whose disk failed its last commit (an I/O error, a
	// file system gone read-only): a restart would not help, a repair
	// of the disk does.
	if err := s.log.StorageFailure(); err != nil {
		s.writeError(w, r, err)
		return
	}
	// A node whose disk is down to the reserve takes no records: a load
	// balancer should send them elsewhere. It becomes ready again by
	// itself once space is freed.
	if room, ok := s.log.Store().(infertrail.Room); ok {
		if err := room.Room(); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ready\n"))
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}
