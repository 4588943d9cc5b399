package export

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Secret is a credential in configuration. It formats and logs as
// "REDACTED", so that it cannot leak into logs or error messages.
type Secret string

// String returns "REDACTED".
func (Secret) String() string { return "REDACTED" }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// Formats of an HTTP sink's request body.
const (
	HTTPFormatNDJSON = "ndjson" // one OCSF event per line (application/x-ndjson)
	HTTPFormatJSON   = "json"   // one JSON array of OCSF events
	HTTPFormatHEC    = "hec"    // Splunk HTTP Event Collector: {"time":…,"sourcetype":"ocsf","event":…} per event
)

// HTTPConfig configures an HTTP sink. Zero values mean the defaults.
type HTTPConfig struct {
	// URL receives the POST requests (required, http or https).
	URL string
	// Format is the request body: HTTPFormatNDJSON (default),
	// HTTPFormatJSON or HTTPFormatHEC.
	Format string
	// AuthHeader is the header that carries Auth (default Authorization);
	// Auth is its whole value, such as "Bearer …" or "Splunk …".
	AuthHeader string
	Auth       Secret
	// Headers are other headers to send, such as a Datadog DD-API-KEY
	// (values are not logged either).
	Headers map[string]Secret
	// Gzip compresses request bodies (Content-Encoding: gzip).
	Gzip bool
	// Timeout bounds each request, from connecting to reading the answer
	// (default 30s).
	Timeout time.Duration
	// TLS configures HTTPS, such as a private CA (default: the system's).
	TLS *tls.Config
	// Transport, if set, sends the requests (tests).
	Transport http.RoundTripper
}

// HTTPSink posts batches of OCSF events to an HTTP receiver: a SIEM's
// collector, a log pipeline, a webhook. A batch is delivered when the
// receiver answers 2xx.
type HTTPSink struct {
	cfg    HTTPConfig
	client *http.Client
	shown  string // the URL without credentials or query, for messages
}

// NewHTTPSink validates cfg and returns a sink.
func NewHTTPSink(cfg HTTPConfig) (*HTTPSink, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("http sink: url: want http:// or https:// and a host")
	}
	switch cfg.Format {
	case "":
		cfg.Format = HTTPFormatNDJSON
	case HTTPFormatNDJSON, HTTPFormatJSON, HTTPFormatHEC:
	default:
		return nil, fmt.Errorf("http sink: format %q: want ndjson, json or hec", cfg.Format)
	}
	if cfg.AuthHeader == "" {
		cfg.AuthHeader = "Authorization"
	}
	for _, h := range append([]string{cfg.AuthHeader}, keys(cfg.Headers)...) {
		if !validHeaderName(h) {
			return nil, fmt.Errorf("http sink: header name %q: not a valid HTTP header name", h)
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = cfg.TLS
		t.ResponseHeaderTimeout = cfg.Timeout
		rt = t
	}
	shown := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	return &HTTPSink{cfg: cfg, client: &http.Client{Transport: rt, Timeout: cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, shown: shown}, nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for _, c := range h {
		if c > unicode.MaxASCII || c <= ' ' || strings.ContainsRune(`()<>@,;:\"/[]?={}`, c) {
			return false
		}
	}
	return true
}

// body encodes a batch in the sink's format.
func (s *HTTPSink) body(events []Event) ([]byte, string) {
	var b bytes.Buffer
	switch s.cfg.Format {
	case HTTPFormatJSON:
		b.WriteByte('[')
		for i, e := range events {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(e.JSON)
		}
		b.WriteByte(']')
		return b.Bytes(), "application/json"
	case HTTPFormatHEC:
		for _, e := range events {
			b.WriteString(`{"time":`)
			b.WriteString(strconv.FormatFloat(float64(e.Time.UnixMilli())/1000, 'f', 3, 64))
			b.WriteString(`,"source":"infertrail","sourcetype":"ocsf","fields":{"tenant":`)
			t, _ := json.Marshal(e.Tenant)
			b.Write(t)
			b.WriteString(`},"event":`)
			b.Write(e.JSON)
			b.WriteString("}\n")
		}
		return b.Bytes(), "application/json"
	}
	for _, e := range events {
		b.Write(e.JSON)
		b.WriteByte('\n')
	}
	return b.Bytes(), "application/x-ndjson"
}

// Send posts the batch in one request.
func (s *HTTPSink) Send(ctx context.Context, events []Event) error {
	body, ctype := s.body(events)
	if s.cfg.Gzip {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(body)
		if err := zw.Close(); err != nil {
			return fmt.Errorf("gzip batch: %w", err)
		}
		body = z.Bytes()
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("POST %s: %w", s.shown, err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("User-Agent", "InferTrail SIEM stream")
	if s.cfg.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	for k, v := range s.cfg.Headers {
		req.Header.Set(k, string(v))
	}
	if s.cfg.Auth != "" {
		req.Header.Set(s.cfg.AuthHeader, string(s.cfg.Auth))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// The *url.Error names the full URL, which may carry a token in
		// its query: name the sink's URL without it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("POST %s: %w", s.shown, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = fmt.Errorf("POST %s: the receiver answered %s%s", s.shown, resp.Status, excerpt(msg))
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if d, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
			return &RetryAfterError{After: d, Err: err}
		}
	}
	return err
}

// Close closes idle connections.
func (s *HTTPSink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}

// excerpt quotes the start of a receiver's answer, printable characters only.
func excerpt(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, string(b))
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		return ""
	}
	return ": " + strconv.Quote(s)
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}
