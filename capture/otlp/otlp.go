// Package otlp is InferTrail's OTLP receiver: OpenTelemetry traces and
// logs, over OTLP/HTTP (protobuf or JSON, gzip or not) and OTLP/gRPC,
// become records. Spans that follow the GenAI semantic conventions become
// inferences, tool calls and policy decisions; HTTP and database client
// spans in an AI interaction's trace become downstream calls. An export
// is answered once its records are durable.
package otlp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/capture/body"
)

// Config configures a Receiver. Zero values are documented defaults.
type Config struct {
	Recorder infertrail.Recorder // required: where records go; it answers once they are durable
	Mapper   *Mapper             // default: NewMapper(MapConfig{})
	// Auth, if set, authenticates callers: a bearer token (HTTP
	// Authorization, gRPC authorization metadata) with the ingest role.
	Auth infertrail.Authenticator
	// MaxBodyBytes bounds a request body, before and after gzip (default
	// 16 MiB).
	MaxBodyBytes int64
	Logger       *slog.Logger
	Registry     prometheus.Registerer // where the receiver registers its metrics; nil: none
}

// Receiver receives OTLP exports. It is an http.Handler for POST
// /v1/traces and POST /v1/logs, and registers the gRPC services with
// Register. It is safe for concurrent use.
type Receiver struct {
	cfg Config
	mux *http.ServeMux
	m   metrics
	coltracepb.UnimplementedTraceServiceServer
	logs logsService
}

// metrics are the receiver's counters by name (received, recorded,
// dropped, refused); a nil *metrics counts nothing.
type metrics map[string]*prometheus.CounterVec

func (m metrics) add(name, signal string, n int) {
	if v := m[name]; v != nil && n > 0 {
		v.WithLabelValues(signal).Add(float64(n))
	}
}

// New returns a receiver.
func New(cfg Config) (*Receiver, error) {
	if cfg.Recorder == nil {
		return nil, errors.New("new OTLP receiver: Recorder is required")
	}
	if cfg.Mapper == nil {
		m, err := NewMapper(MapConfig{})
		if err != nil {
			return nil, err
		}
		cfg.Mapper = m
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 16 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Receiver{cfg: cfg, mux: http.NewServeMux()}
	r.logs.r = r
	if cfg.Registry != nil {
		r.m = metrics{}
		for _, c := range []struct{ name, metric, help string }{
			{"received", "infertrail_otlp_items_received_total", "Spans and log records received over OTLP, by signal."},
			{"recorded", "infertrail_otlp_records_total", "Records appended from OTLP data, by signal."},
			{"dropped", "infertrail_otlp_items_dropped_total", "Spans and log records dropped as not part of an AI interaction, by signal."},
			{"refused", "infertrail_otlp_requests_refused_total", "Export requests refused (bad input, authentication, busy), by signal."},
		} {
			r.m[c.name] = prometheus.NewCounterVec(prometheus.CounterOpts{Name: c.metric, Help: c.help}, []string{"signal"})
			cfg.Registry.MustRegister(r.m[c.name])
		}
	}
	r.mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, req *http.Request) { r.serveHTTP(w, req, "traces") })
	r.mux.HandleFunc("POST /v1/logs", func(w http.ResponseWriter, req *http.Request) { r.serveHTTP(w, req, "logs") })
	return r, nil
}

// Paths are the HTTP routes the receiver serves.
var Paths = []string{"POST /v1/traces", "POST /v1/logs"}

// ServeHTTP serves OTLP/HTTP.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) { r.mux.ServeHTTP(w, req) }

// Register registers the OTLP/gRPC trace and logs services on s.
func (r *Receiver) Register(s *grpc.Server) {
	coltracepb.RegisterTraceServiceServer(s, r)
	collogspb.RegisterLogsServiceServer(s, &r.logs)
}

// export decodes nothing: it maps a decoded request and records it. It
// returns how many items it dropped.
func (r *Receiver) export(ctx context.Context, signal string, msg proto.Message, p *infertrail.Principal) (int, error) {
	tenant := infertrail.DefaultTenant
	if p != nil && p.Tenant != infertrail.AllTenants {
		tenant = p.Tenant
	}
	var (
		res   Result
		err   error
		items int
	)
	switch req := msg.(type) {
	case *coltracepb.ExportTraceServiceRequest:
		items = countSpans(req)
		res, err = r.cfg.Mapper.Traces(req, tenant)
	case *collogspb.ExportLogsServiceRequest:
		items = countLogs(req)
		res, err = r.cfg.Mapper.Logs(req, tenant)
	}
	r.m.add("received", signal, items)
	if err != nil {
		return 0, err
	}
	if len(res.Records) > 0 {
		if _, err := r.cfg.Recorder.Record(ctx, res.Records...); err != nil {
			return 0, err
		}
	}
	r.m.add("recorded", signal, len(res.Records))
	r.m.add("dropped", signal, res.Dropped)
	return res.Dropped, nil
}

func countSpans(req *coltracepb.ExportTraceServiceRequest) int {
	n := 0
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	return n
}

func countLogs(req *collogspb.ExportLogsServiceRequest) int {
	n := 0
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			n += len(sl.GetLogRecords())
		}
	}
	return n
}

// serveHTTP is one OTLP/HTTP export: the body is read (bounded, gzip
// undone), decoded, mapped and recorded; the answer comes once the records
// are durable, in the request's encoding.
func (r *Receiver) serveHTTP(w http.ResponseWriter, req *http.Request, signal string) {
	mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	isJSON := mt == "application/json"
	if err != nil || (!isJSON && mt != "application/x-protobuf") {
		r.refuse(w, req, signal, isJSON, fmt.Errorf("Content-Type %q: want application/x-protobuf or application/json: %w",
			req.Header.Get("Content-Type"), body.ErrUnsupportedMedia))
		return
	}
	p, err := access.Require(req.Context(), r.cfg.Auth, access.Bearer(req.Header.Get("Authorization")), infertrail.PermIngest, "export telemetry")
	if err != nil {
		r.refuse(w, req, signal, isJSON, err)
		return
	}
	data, err := body.Read(w, req, r.cfg.MaxBodyBytes)
	if err != nil {
		r.refuse(w, req, signal, isJSON, err)
		return
	}
	var msg, resp proto.Message
	if signal == "traces" {
		msg, resp = &coltracepb.ExportTraceServiceRequest{}, &coltracepb.ExportTraceServiceResponse{}
	} else {
		msg, resp = &collogspb.ExportLogsServiceRequest{}, &collogspb.ExportLogsServiceResponse{}
	}
	if isJSON {
		err = unmarshalJSON(data, msg)
	} else {
		err = proto.Unmarshal(data, msg)
	}
	if err != nil {
		r.refuse(w, req, signal, isJSON, fmt.Errorf("the body is not an OTLP %s export: %v: %w", signal, err, infertrail.ErrInvalid))
		return
	}
	if _, err := r.export(req.Context(), signal, msg, p); err != nil {
		r.refuse(w, req, signal, isJSON, err)
		return
	}
	r.write(w, http.StatusOK, isJSON, resp)
}

// refuse answers a request that recorded nothing, with the status the OTLP
// specification gives: 400 for bad data (not to be retried), 401/403,
// 413, 415, and 429/503 with Retry-After when the client should retry.
func (r *Receiver) refuse(w http.ResponseWriter, req *http.Request, signal string, isJSON bool, err error) {
	r.m.add("refused", signal, 1)
	code, _ := body.Status(w, req, err)
	st := map[int]codes.Code{
		http.StatusUnsupportedMediaType: codes.InvalidArgument, http.StatusUnauthorized: codes.Unauthenticated,
		http.StatusForbidden: codes.PermissionDenied, http.StatusTooManyRequests: codes.ResourceExhausted,
		http.StatusRequestEntityTooLarge: codes.InvalidArgument, http.StatusBadRequest: codes.InvalidArgument,
		http.StatusServiceUnavailable: codes.Unavailable, 499: codes.Canceled,
	}[code]
	if st == codes.OK {
		st = codes.Internal
	}
	msg := err.Error()
	if code == http.StatusInternalServerError {
		r.cfg.Logger.Error("otlp: export failed", "signal", signal, "err", err)
		msg = "internal error"
	} else if code == http.StatusServiceUnavailable {
		r.cfg.Logger.Warn("otlp: export refused", "signal", signal, "err", err)
	}
	r.write(w, code, isJSON, &spb.Status{Code: int32(st), Message: msg})
}

func (r *Receiver) write(w http.ResponseWriter, code int, isJSON bool, m proto.Message) {
	var b []byte
	var err error
	if isJSON {
		w.Header().Set("Content-Type", "application/json")
		b, err = protojson.Marshal(m)
	} else {
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, err = proto.Marshal(m)
	}
	if err != nil {
		code, b = http.StatusInternalServerError, nil
	}
	w.WriteHeader(code)
	w.Write(b)
}

// unmarshalJSON decodes OTLP/JSON. It differs from protojson in one way
// the specification sets: trace and span ids are hex strings, not base64.
// Unknown fields are ignored, as the specification asks of receivers.
func unmarshalJSON(b []byte, m proto.Message) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	if err := hexIDs(v); err != nil {
		return err
	}
	nb, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(nb, m)
}

// hexIDs rewrites the hex trace and span ids of an OTLP/JSON value as
// base64, for protojson.
func hexIDs(v any) error {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			switch k {
			case "traceId", "spanId", "parentSpanId":
				s, ok := e.(string)
				if !ok {
					return fmt.Errorf("%s: not a string", k)
				}
				b, err := hex.DecodeString(s)
				if err != nil {
					return fmt.Errorf("%s %q: not hex", k, s)
				}
				x[k] = base64.StdEncoding.EncodeToString(b)
			default:
				if err := hexIDs(e); err != nil {
					return err
				}
			}
		}
	case []any:
		for _, e := range x {
			if err := hexIDs(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// Export implements the OTLP/gRPC trace service.
func (r *Receiver) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	if err := r.exportGRPC(ctx, "traces", req); err != nil {
		return nil, err
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

type logsService struct {
	collogspb.UnimplementedLogsServiceServer
	r *Receiver
}

// Export implements the OTLP/gRPC logs service.
func (s *logsService) Export(ctx context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	if err := s.r.exportGRPC(ctx, "logs", req); err != nil {
		return nil, err
	}
	return &collogspb.ExportLogsServiceResponse{}, nil
}

func (r *Receiver) exportGRPC(ctx context.Context, signal string, req proto.Message) error {
	var token string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			token = access.Bearer(v[0])
		}
	}
	p, err := access.Require(ctx, r.cfg.Auth, token, infertrail.PermIngest, "export telemetry")
	if err == nil {
		_, err = r.export(ctx, signal, req, p)
	}
	if err == nil {
		return nil
	}
	r.m.add("refused", signal, 1)
	switch {
	case errors.Is(err, infertrail.ErrUnauthenticated):
		return status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, infertrail.ErrForbidden):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, infertrail.ErrRateLimited):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, infertrail.ErrInvalid), errors.Is(err, infertrail.ErrTooLarge), errors.Is(err, infertrail.ErrConflict):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, infertrail.ErrPushback), errors.Is(err, infertrail.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.Unavailable, err.Error())
	}
	r.cfg.Logger.Error("otlp: export failed", "signal", signal, "err", err)
	return status.Error(codes.Internal, "internal error")
}
