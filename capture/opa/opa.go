// Package opa receives Open Policy Agent decision logs: the JSON arrays of
// decision events that OPA's decision_logs plugin uploads become
// policy_decision records, so that an existing OPA deployment's decisions
// join the trail. An upload is answered once its records are durable.
package opa

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/capture/body"
)

// Config configures a Receiver. Zero values are documented defaults.
type Config struct {
	Recorder infertrail.Recorder // required: where records go; it answers once they are durable
	// Auth, if set, authenticates OPA: a bearer token (OPA's
	// services.<name>.credentials.bearer) with the ingest role. The
	// records go to the token's tenant; a token for every tenant writes
	// to the default tenant.
	Auth infertrail.Authenticator
	// MaxBodyBytes bounds an upload, before and after gzip (default
	// 16 MiB).
	MaxBodyBytes int64
	Logger       *slog.Logger
	Registry     prometheus.Registerer // where the receiver registers its metrics; nil: none
}

// Receiver receives OPA decision-log uploads. It is an http.Handler for
// POST /logs, the path OPA posts to under its service URL by default. It
// is safe for concurrent use.
type Receiver struct {
	cfg Config
	mux *http.ServeMux
	m   metrics
}

// Paths are the HTTP routes the receiver serves.
var Paths = []string{"POST /logs"}

// metrics are the receiver's counters; the zero value counts nothing.
type metrics struct {
	received, recorded prometheus.Counter
	refused            *prometheus.CounterVec // by HTTP status code
}

// New returns a receiver.
func New(cfg Config) (*Receiver, error) {
	if cfg.Recorder == nil {
		return nil, errors.New("new OPA decision-log receiver: Recorder is required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 16 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Receiver{cfg: cfg, mux: http.NewServeMux()}
	if cfg.Registry != nil {
		r.m.received = prometheus.NewCounter(prometheus.CounterOpts{Name: "infertrail_opa_events_received_total",
			Help: "OPA decision-log events received."})
		r.m.recorded = prometheus.NewCounter(prometheus.CounterOpts{Name: "infertrail_opa_records_total",
			Help: "OPA decision-log events the trail holds as policy_decision records once their upload was answered (re-sent ones included)."})
		r.m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infertrail_opa_requests_refused_total",
			Help: "OPA decision-log uploads refused (bad input, authentication, busy), by HTTP status code."}, []string{"code"})
		for _, c := range []prometheus.Collector{r.m.received, r.m.recorded, r.m.refused} {
			if err := cfg.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("new OPA decision-log receiver: register metrics: %w", err)
			}
		}
	}
	r.mux.HandleFunc(Paths[0], r.serveLogs)
	return r, nil
}

// ServeHTTP serves POST /logs.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) { r.mux.ServeHTTP(w, req) }

// serveLogs is one upload: the body is read (bounded, gzip undone), every
// event is mapped, and the records are appended in one call: all of them,
// or on any error none. The answer comes once they are durable.
func (r *Receiver) serveLogs(w http.ResponseWriter, req *http.Request) {
	mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		r.refuse(w, req, fmt.Errorf("Content-Type %q: want application/json: %w", req.Header.Get("Content-Type"), body.ErrUnsupportedMedia))
		return
	}
	p, err := access.Require(req.Context(), r.cfg.Auth, access.Bearer(req.Header.Get("Authorization")), infertrail.PermIngest, "upload decision logs")
	if err != nil {
		r.refuse(w, req, err)
		return
	}
	data, err := body.Read(w, req, r.cfg.MaxBodyBytes)
	if err != nil {
		r.refuse(w, req, err)
		return
	}
	tenant := infertrail.DefaultTenant
	if p != nil && p.Tenant != infertrail.AllTenants {
		tenant = p.Tenant
	}
	events, err := split(data)
	if err != nil {
		r.refuse(w, req, err)
		return
	}
	if r.m.received != nil {
		r.m.received.Add(float64(len(events)))
	}
	recs, err := mapEvents(events, tenant)
	if err != nil {
		r.refuse(w, req, err)
		return
	}
	if len(recs) > 0 {
		if _, err := r.cfg.Recorder.Record(req.Context(), recs...); err != nil {
			r.refuse(w, req, err)
			return
		}
		if r.m.recorded != nil {
			r.m.recorded.Add(float64(len(recs)))
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "{}\n")
}

// apiError is the body of a refusal, in the shape of InferTrail's API
// errors. OPA reads only the status: any answer but 2xx makes it keep the
// events and upload them again later, with backoff.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Event   *int   `json:"event,omitempty"` // index of the event at fault in the uploaded array
	Field   string `json:"field,omitempty"`
}

// refuse answers an upload that recorded nothing. It is the one place
// that maps errors to HTTP statuses: 400 for a malformed upload, 401/403,
// 413, 415, and 429/503 with Retry-After when the trail cannot take it now.
func (r *Receiver) refuse(w http.ResponseWriter, req *http.Request, err error) {
	status, code := body.Status(w, req, err)
	resp := apiError{Code: code, Message: err.Error()}
	var fe *infertrail.FieldError
	if errors.As(err, &fe) && fe.Record >= 0 {
		// One record per event, in order: the record's index is the event's.
		resp.Event, resp.Field = &fe.Record, fe.Field
		if fe.Field == "" {
			resp.Message = fmt.Sprintf("event %d: %s", fe.Record, fe.Reason)
		} else {
			resp.Message = fmt.Sprintf("event %d: field %s: %s", fe.Record, fe.Field, fe.Reason)
		}
	}
	// OPA logs only the status of a refused upload, and keeps sending it
	// again: the reason is logged here, where its operator can find it.
	switch status {
	case http.StatusInternalServerError:
		r.cfg.Logger.Error("opa: decision-log upload failed", "remote", req.RemoteAddr, "err", err)
		resp.Message = "internal error"
	case 499:
	default:
		r.cfg.Logger.Warn("opa: decision-log upload refused", "remote", req.RemoteAddr, "status", status, "err", resp.Message)
	}
	if r.m.refused != nil {
		r.m.refused.WithLabelValues(strconv.Itoa(status)).Inc()
	}
	b, _ := json.Marshal(map[string]apiError{"error": resp})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
