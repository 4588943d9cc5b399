// Package client hands records to a running InferTrail server through its
// native ingest API (POST /v1/records), as an infertrail.Recorder.
//
// A process that captures records but does not hold the log — an MCP stdio
// wrapper, a batch job, an agent runtime — uses a *Recorder where an
// in-process adapter would use the ledger itself:
//
//	rec, err := client.New(client.Config{URL: "https://trail.example:8443", Token: token})
//	…
//	seqs, err := rec.Record(ctx, records...)
package client

import (
	"bytes"
	"context"
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
	"unicode/utf8"

	"github.com/infertrail/infertrail"
)

// Defaults of Config.
const (
	DefaultMaxBatch = 1000
	DefaultTimeout  = 30 * time.Second
)

// Config configures a Recorder. The zero value of each optional field means
// its default.
type Config struct {
	// URL is the server's base URL, http:// or https://, with a path prefix
	// if a reverse proxy serves the API below one (required).
	URL string
	// Token is an API token with the ingest role, sent as Authorization:
	// Bearer. It never appears in a log value or an error. Empty sends no
	// credential, for a server without authentication.
	Token string
	// HTTPClient sends the requests (default: an http.Client with a
	// Timeout of DefaultTimeout).
	HTTPClient *http.Client
	// MaxBatch is the most records sent in one request (default
	// DefaultMaxBatch); a larger call is split into several requests, sent
	// in order. It must not exceed the server's limit (10,000 by default).
	MaxBatch int
}

// LogValue implements slog.LogValuer without revealing the token.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("url", redactedURL(c.URL)), slog.String("token", redactedToken(c.Token)),
		slog.Int("max_batch", c.MaxBatch))
}

// String describes the configuration without revealing the token.
func (c Config) String() string {
	return fmt.Sprintf("client.Config{URL: %q, Token: %s, MaxBatch: %d}", redactedURL(c.URL), redactedToken(c.Token), c.MaxBatch)
}

func redactedToken(t string) string {
	if t == "" {
		return "(none)"
	}
	return "[redacted]"
}

func redactedURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

// Recorder sends records to an InferTrail server. It implements
// infertrail.Recorder and is safe for concurrent use.
type Recorder struct {
	endpoint string // the base URL + /v1/records
	base     string // the base URL, for messages
	token    string
	hc       *http.Client
	maxBatch int
}

var _ infertrail.Recorder = (*Recorder)(nil)

// New returns a Recorder for the server at cfg.URL. It checks the
// configuration but does not contact the server.
func New(cfg Config) (*Recorder, error) {
	if cfg.URL == "" {
		return nil, errors.New("new client: URL is required")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("new client: URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("new client: URL %q: want http:// or https://", u.Redacted())
	case u.Host == "":
		return nil, fmt.Errorf("new client: URL %q: no host", u.Redacted())
	case u.User != nil:
		return nil, fmt.Errorf("new client: URL %q: holds user information; put the API token in Token", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, fmt.Errorf("new client: URL %q: want a base URL, without a query or fragment", u.Redacted())
	}
	for i := 0; i < len(cfg.Token); i++ {
		if c := cfg.Token[i]; c <= ' ' || c >= 0x7f {
			// Never the token itself, nor the offending character.
			return nil, errors.New("new client: Token holds a space, a control character or a non-ASCII byte")
		}
	}
	if cfg.MaxBatch < 0 {
		return nil, fmt.Errorf("new client: MaxBatch %d is negative", cfg.MaxBatch)
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultTimeout}
	}
	return &Recorder{
		endpoint: u.JoinPath("v1", "records").String(),
		base:     u.String(),
		token:    cfg.Token,
		hc:       cfg.HTTPClient,
		maxBatch: cfg.MaxBatch,
	}, nil
}

// String names the server without revealing the token.
func (c *Recorder) String() string { return "infertrail client for " + c.base }

// LogValue implements slog.LogValuer without revealing the token.
func (c *Recorder) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Record sends recs to the server and returns their sequence numbers, in
// order, once the server has made every one durable.
//
// Before it sends anything, Record sets an id (infertrail.NewUUID) on each
// record that has none; it changes nothing else in the records. A missing
// time or tenant is filled in by the server, in its copy only.
//
// A call with more than MaxBatch records is split into requests of at most
// MaxBatch records, sent one after the other in order. Each request is
// appended whole or not at all, but a split call is not: unlike what
// infertrail.Recorder promises, a failed request leaves the requests before
// it appended, and Record returns their sequence numbers with the error.
// Retrying the call with the same, unchanged records is safe, split or
// not: they now carry ids, and the server answers a record it already
// holds with its sequence number instead of appending it again. The same
// holds after a timeout or a lost connection, when a request may have been
// appended without its answer arriving.
//
// Errors: a refused record is an *infertrail.FieldError with the record's
// index in recs, wrapping infertrail.ErrInvalid (400), ErrTooLarge (413),
// ErrForbidden (403: a tenant the token may not write) or ErrConflict (409:
// its id is taken by a different record). Other refusals are an *Error
// wrapping ErrInvalid, ErrTooLarge, ErrUnauthenticated (401), ErrForbidden
// (403), ErrPushback (503; ErrStorageFull when the server's disk is full,
// ErrStorageFailed when it failed a write) or, with 429, an
// *infertrail.RateLimitError (so ErrRateLimited). When the server cannot
// be reached or does not answer, the error wraps infertrail.ErrUnavailable;
// when ctx ends, ctx's error. Record never retries by itself: after
// ErrPushback, ErrStorageFull, ErrStorageFailed or ErrRateLimited, wait
// for Error.RetryAfter before trying again.
func (c *Recorder) Record(ctx context.Context, recs ...*infertrail.Record) ([]int64, error) {
	for i, r := range recs {
		if r == nil {
			return nil, &infertrail.FieldError{Record: i, Field: "(record)", Reason: "nil record", Err: infertrail.ErrInvalid}
		}
	}
	for _, r := range recs {
		if r.ID.IsZero() {
			r.ID = infertrail.NewUUID()
		}
	}
	var seqs []int64
	for start := 0; start < len(recs); start += c.maxBatch {
		got, err := c.send(ctx, recs, start, min(start+c.maxBatch, len(recs)))
		if err != nil {
			return seqs, err
		}
		seqs = append(seqs, got...)
	}
	return seqs, nil
}

// send posts recs[start:end] as one request.
func (c *Recorder) send(ctx context.Context, recs []*infertrail.Record, start, end int) ([]int64, error) {
	batch := recs[start:end]
	body := make([]byte, 0, 2+1024*len(batch))
	body = append(body, '[')
	for i, r := range batch {
		b, err := r.MarshalJSON()
		if err != nil {
			var fe *infertrail.FieldError
			if errors.As(err, &fe) {
				fe.Record = start + i
				return nil, fe
			}
			return nil, fmt.Errorf("encode record %d: %w", start+i, err)
		}
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, b...)
	}
	body = append(body, ']')

	what := "send records"
	if len(recs) > len(batch) {
		what = fmt.Sprintf("send records %d to %d of %d", start, end-1, len(recs))
		if start > 0 {
			what += fmt.Sprintf(" (0 to %d appended)", start-1)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "infertrail-client")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.networkError(ctx, what, err)
	}
	defer resp.Body.Close()
	limit := int64(1<<20 + 100*len(batch))
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, c.networkError(ctx, what+": read the answer", err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: the server's answer (HTTP %d) is longer than %d bytes", what, resp.StatusCode, limit)
	}
	if resp.StatusCode != http.StatusOK {
		err := c.refusal(resp, data, start)
		if _, ok := err.(*infertrail.FieldError); ok {
			return nil, err
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}

	var ans struct {
		Records []struct {
			Seq int64           `json:"seq"`
			ID  infertrail.UUID `json:"id"`
		} `json:"records"`
	}
	if err := json.Unmarshal(data, &ans); err != nil {
		return nil, fmt.Errorf("%s: the server's answer is not an ingest result: %v", what, err)
	}
	if len(ans.Records) != len(batch) {
		return nil, fmt.Errorf("%s: the server answered %d results for %d records", what, len(ans.Records), len(batch))
	}
	seqs := make([]int64, len(batch))
	for i, res := range ans.Records {
		if res.ID != batch[i].ID {
			return nil, fmt.Errorf("%s: the server answered id %s for record %d, whose id is %s", what, res.ID, start+i, batch[i].ID)
		}
		seqs[i] = res.Seq
	}
	return seqs, nil
}

// networkError wraps a failure to reach the server or read its answer.
func (c *Recorder) networkError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, err) // err wraps ctx's error
	}
	return fmt.Errorf("%s: %w: %w", what, infertrail.ErrUnavailable, err)
}

// Error is a request the server refused, other than for one field of a
// record (that is an *infertrail.FieldError).
type Error struct {
	Status     int           // the HTTP status code
	Code       string        // the server's error code, such as "unauthenticated"; empty if the answer was not InferTrail's
	Message    string        // the server's explanation
	RetryAfter time.Duration // from the Retry-After header, sent with 429 and 503; 0 if absent
	// Err is what the error wraps: an infertrail sentinel such as
	// ErrPushback, or an *infertrail.RateLimitError; nil when none applies.
	Err error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("server answered %d %s", e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// refusal turns an error answer into an error: a *infertrail.FieldError
// when the server named a record or field, else an *Error.
func (c *Recorder) refusal(resp *http.Response, data []byte, start int) error {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Record  *int   `json:"record"`
			Field   string `json:"field"`
		} `json:"error"`
	}
	e := &Error{Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	if json.Unmarshal(data, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message = body.Error.Code, c.redact(body.Error.Message)
	} else {
		e.Message = c.redact(snippet(data))
	}
	switch resp.StatusCode {
	case http.StatusBadRequest:
		e.Err = infertrail.ErrInvalid
	case http.StatusRequestEntityTooLarge:
		e.Err = infertrail.ErrTooLarge
	case http.StatusUnauthorized:
		e.Err = infertrail.ErrUnauthenticated
	case http.StatusForbidden:
		e.Err = infertrail.ErrForbidden
	case http.StatusConflict:
		e.Err = infertrail.ErrConflict
	case http.StatusTooManyRequests:
		rl := &infertrail.RateLimitError{RetryAfter: e.RetryAfter}
		fmt.Sscanf(e.Message, "more than %g requests per second", &rl.Limit)
		e.Err = rl
	case http.StatusServiceUnavailable:
		e.Err = infertrail.ErrPushback
		switch e.Code {
		case "storage_full":
			e.Err = infertrail.ErrStorageFull
		case "storage_failed":
			e.Err = infertrail.ErrStorageFailed
		}
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		e.Err = infertrail.ErrUnavailable
	}
	if body.Error.Record == nil && body.Error.Field == "" || e.Err == nil || resp.StatusCode >= 429 {
		return e
	}
	fe := &infertrail.FieldError{Record: -1, Field: c.redact(body.Error.Field), Reason: e.Message, Err: e.Err}
	if fe.Field == "" {
		fe.Field = "(record)"
	}
	// The server's message is the FieldError's text, with the record's
	// index in the request; keep the reason alone, so that the error
	// speaks of the index in the call.
	prefix := "field " + fe.Field + ": "
	if r := body.Error.Record; r != nil {
		fe.Record = start + *r
		prefix = "record " + strconv.Itoa(*r) + ": " + prefix
	}
	if reason, ok := strings.CutPrefix(fe.Reason, prefix); ok && reason != "" {
		fe.Reason = reason
	}
	return fe
}

// redact removes the token from text that came from the server.
func (c *Recorder) redact(s string) string {
	if c.token == "" {
		return s
	}
	return strings.ReplaceAll(s, c.token, "[redacted]")
}

// snippet is the start of an answer that is not InferTrail's (a proxy's
// error page), as one line of printable text.
func snippet(data []byte) string {
	const max = 200
	s := strings.ToValidUTF8(string(data[:min(len(data), max+utf8.UTFMax)]), "\ufffd")
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }), " ")
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "…"
	}
	return s
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if s, err := strconv.ParseInt(h, 10, 64); err == nil {
		if s < 0 || s > 1<<31 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}
