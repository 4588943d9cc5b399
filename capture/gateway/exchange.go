package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/redact"
)

type ctxKey struct{}

// exchange is one proxied call.
type exchange struct {
	rt       *route
	start    time.Time
	call     Call
	id       identity
	tc       TraceContext
	session  string
	req      *infertrail.Record
	reqSeq   int64 // -1 until the request record is durable
	respID   infertrail.UUID
	inCtx    context.Context // the caller's request context
	ctx      context.Context // the outbound context
	cancel   context.CancelCauseFunc
	reserved bool   // a pending slot is held for the response record
	fwd      []byte // the body forwarded: the caller's, or what obligations made of it

	status      int
	firstByte   time.Time
	upstreamID  string
	stream      bool
	finished    atomic.Bool
	gatewayBody []byte // an error body the gateway answered itself
	failure     string // why the call failed, when the gateway saw it fail
	// A call held for approval: how long it waited, and the approval
	// record that ended the wait.
	held     time.Duration
	approval infertrail.UUID

	// Policy. policyIn is the inference.request input, which the
	// inference.response input extends.
	policyIn map[string]any
	// The inference.response point: a policy decides on the response
	// (respPolicy), its decision record, a spool slot held for that
	// record, why the response was withheld from the client and with what
	// status, the body delivered in its place when an obligation changed
	// it, what that masked, and why the policy could not decide.
	respPolicy     bool
	respDecision   *infertrail.Record
	decisionSlot   bool
	withheld       string
	withheldStatus int
	delivered      json.RawMessage
	respRedactions []redact.Finding
	policyFailure  string
}

var (
	errIdle         = errors.New("the upstream sent nothing for too long")
	errNotRecorded  = errors.New("the audit trail could not record the response, so it was withheld")
	errHoldTooLarge = errors.New("the response is larger than the gateway holds back (in fail-closed mode, or for a policy to decide on it)")
)

// ServeHTTP proxies one call: it identifies the caller, records the
// request, forwards it, and records the response as it passes back.
func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g := rt.g
	if !g.enter() {
		rt.answer(w, http.StatusServiceUnavailable, "the InferTrail gateway is shutting down; try again")
		return
	}
	defer g.leave()
	ex := &exchange{rt: rt, start: g.cfg.Now(), reqSeq: -1, inCtx: r.Context(), respID: infertrail.NewUUID()}
	id, err := g.identify(r.Context(), rt.p, r.Header)
	ex.id = id
	ex.tc = NewTraceContext(r.Header.Get("traceparent"))
	ex.session = strings.TrimSpace(r.Header.Get(HeaderSession))
	if err != nil {
		var rl *infertrail.RateLimitError
		if errors.As(err, &rl) {
			// Not recorded: a flood of refusals must not flood the trail.
			w.Header().Set("Retry-After", strconv.Itoa(int(max(time.Second, rl.RetryAfter+time.Second-1).Seconds())))
			rt.answer(w, http.StatusTooManyRequests, err.Error())
			return
		}
		status := http.StatusUnauthorized
		if errors.Is(err, infertrail.ErrForbidden) {
			status = http.StatusForbidden
		} else if !errors.Is(err, infertrail.ErrUnauthenticated) {
			g.log.Error("gateway: authentication failed", "provider", rt.p.Name(), "err", err)
			rt.answer(w, http.StatusServiceUnavailable, "InferTrail cannot authenticate callers right now; try again")
			return
		}
		// The attempt is evidence too (a revoked or stolen key): it is
		// recorded with the credential's fingerprint, without the body.
		g.log.Warn("gateway: caller refused", "provider", rt.p.Name(), "path", r.URL.Path, "err", err)
		rt.refuse(w, ex, nil, status, err.Error())
		return
	}

	var body []byte
	if r.Method != http.MethodGet {
		if r.ContentLength > g.cfg.MaxRequestBytes {
			rt.refuse(w, ex, nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is %d bytes; this gateway takes at most %d", r.ContentLength, g.cfg.MaxRequestBytes))
			return
		}
		// Bound the time to read the body, then lift the bound: a streamed
		// response may take long, and the server must notice a client that
		// goes away meanwhile.
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Now().Add(2 * time.Minute))
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.MaxRequestBytes))
		rc.SetReadDeadline(time.Time{})
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				rt.refuse(w, ex, nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is larger than %d bytes, the most this gateway takes", g.cfg.MaxRequestBytes))
				return
			}
			g.log.Debug("gateway: reading a request body failed", "err", err)
			rt.answer(w, http.StatusBadRequest, "the request body could not be read")
			return
		}
	}
	ex.call, err = rt.p.ParseRequest(rt.ep, body)
	if err != nil {
		rt.refuse(w, ex, body, http.StatusBadRequest, err.Error())
		return
	}
	ex.req = ex.requestRecord(body)

	// Policy: decided before anything is forwarded; the decision is
	// recorded with the request record.
	var decision *infertrail.Record
	held := false
	fwd := body // what is forwarded: the body, or what a policy's obligations made of it
	if g.cfg.Policy != nil {
		ex.policyIn = ex.policyInput(body)
		d, err := g.cfg.Policy.Decide(r.Context(), infertrail.PointInferenceRequest, ex.policyIn)
		if err != nil {
			g.log.Error("gateway: policy evaluation failed; the call is refused", "provider", rt.p.Name(), "err", err)
			rt.refuse(w, ex, body, http.StatusServiceUnavailable, "the request was not forwarded: its policy could not be evaluated")
			return
		}
		if d.PolicyID != "" {
			decision = ex.decisionRecord(d, infertrail.PointInferenceRequest, ex.req.ID)
		}
		// A request held for approval goes ahead, if approved, as its
		// obligations make it: they are carried out before the wait.
		holds := d.Result == infertrail.PolicyRequireApproval && g.cfg.Approvals != nil && decision != nil
		var oblErr error
		if (d.Result == infertrail.PolicyAllow || d.Result == infertrail.PolicyModify || holds) && len(d.Obligations) > 0 {
			var out []byte
			var found []redact.Finding
			out, found, oblErr = ex.obligations(infertrail.PointInferenceRequest, d.Obligations, body)
			if out != nil {
				fwd = out
				ex.req.Content["request.forwarded"] = out
				ex.req.Attributes["infertrail.redactions"] = jsonValue(found)
			}
		}
		switch {
		case oblErr != nil:
			rt.denyRequest(w, ex, decision, "the request was not forwarded: its policy's obligations cannot be carried out: "+oblErr.Error())
			return
		case d.Result == infertrail.PolicyAllow, d.Result == infertrail.PolicyModify:
		case holds:
			if !rt.hold(w, ex, decision, d.Reasons) {
				return
			}
			held = true
		default:
			msg := "denied by policy"
			if d.Result == infertrail.PolicyRequireApproval {
				msg = "this request needs an approval, and this gateway holds no calls for approval (no approvals service is configured); it was not forwarded"
			}
			if len(d.Reasons) > 0 {
				msg += ": " + strings.Join(d.Reasons, "; ")
			}
			rt.denyRequest(w, ex, decision, msg)
			return
		}
	}

	// Durability: the request record first, then room for the response's.
	switch {
	case held:
		// The request record and the decision are durable already.
	case g.cfg.Durability == Async:
		// Nothing waits for the record, so check now what the trail would refuse.
		if err := ex.req.Validate(infertrail.Limits{}); err != nil {
			rt.unrecorded(w, err)
			return
		}
		if err := g.sp.Reserve(r.Context()); err != nil {
			rt.unrecorded(w, err)
			return
		}
		g.sp.WriteLater(ex.req)
		if decision != nil {
			g.sp.Persist(decision)
		}
	default:
		// Records waiting to be written after the fact share this commit.
		seq, err := g.sp.RecordNow(r.Context(), ex.req, nonNil(decision)...)
		if err != nil {
			rt.unrecorded(w, err)
			return
		}
		ex.reqSeq = seq
		if err := r.Context().Err(); err != nil {
			// The client went away while its request was being recorded:
			// the record says it was not forwarded.
			g.m.request(rt.p.Name(), rt.ep.Operation, 499)
			ex.finishRefused(499, err)
			return
		}
	}
	if g.cfg.Durability != FailClosed {
		if err := g.sp.Reserve(r.Context()); err != nil {
			// The request is on record but will not be forwarded: say so.
			ex.gatewayBody = rt.p.ErrorBody(http.StatusServiceUnavailable, "the InferTrail gateway is busy; try again")
			rt.answer(w, http.StatusServiceUnavailable, "the InferTrail gateway is busy; try again")
			ex.finishRefused(http.StatusServiceUnavailable, err)
			return
		}
		ex.reserved = true
	}

	ctx, cancel := context.WithCancelCause(r.Context())
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, rt.up.Timeout,
		fmt.Errorf("the call took longer than %s: %w", rt.up.Timeout, context.DeadlineExceeded))
	defer cancelTimeout()
	defer cancel(nil)
	ex.ctx, ex.cancel = context.WithValue(ctx, ctxKey{}, ex), cancel
	out := r.WithContext(ex.ctx)
	ex.fwd = fwd
	SetBody(out, fwd)
	defer func() {
		// A call that never reached modifyResponse or errorHandler (the
		// handler was aborted) still gets its response record.
		if !ex.finished.Load() {
			ex.finish(Response{}, "client_disconnected", nil)
		}
	}()
	rt.proxy.ServeHTTP(w, out)
}

// denyRequest refuses a request its policy did not let through: the
// request record, marked refused, is written with the decision before
// the client gets a 403 in the provider's shape.
func (rt *route) denyRequest(w http.ResponseWriter, ex *exchange, decision *infertrail.Record, msg string) {
	ex.req.Attributes["infertrail.refused"] = jsonString(msg)
	ex.req.Attributes["http.response.status_code"] = jsonInt(http.StatusForbidden)
	if _, err := rt.g.sp.RecordNow(ex.inCtx, ex.req, nonNil(decision)...); err != nil {
		rt.unrecorded(w, err)
		return
	}
	rt.answer(w, http.StatusForbidden, msg)
}

// answer writes an error in the provider's shape.
func (rt *route) answer(w http.ResponseWriter, status int, msg string) {
	rt.g.m.request(rt.p.Name(), rt.ep.Operation, status)
	writeProviderError(w, rt.p, status, msg)
}

// unrecorded answers a call whose request record could not be written:
// it is not forwarded.
func (rt *route) unrecorded(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, infertrail.ErrInvalid), errors.Is(err, infertrail.ErrTooLarge):
		rt.answer(w, statusOf(err), "InferTrail cannot record this request: "+err.Error())
	case errors.Is(err, context.Canceled):
		rt.g.m.request(rt.p.Name(), rt.ep.Operation, 499)
	default:
		rt.g.unrecorded.Log(rt.g.log, slog.LevelWarn, "gateway: request not forwarded: its record could not be written", "provider", rt.p.Name(), "err", err)
		rt.answer(w, http.StatusServiceUnavailable, "the request was not forwarded: the InferTrail audit trail cannot record it right now; try again")
	}
}

// hold holds a request its policy says needs an approval. The request
// record and its decision are made durable first (whatever the
// durability mode: the approval names them, and a wait of minutes makes
// a commit cheap); then the call waits, with nothing sent to the client,
// bounded by the approval timeout and by the client, which may go away.
// It reports whether the request was approved and may go ahead; if not,
// the client has been answered, in the provider's error shape, and the
// refusal recorded as the call's response record.
func (rt *route) hold(w http.ResponseWriter, ex *exchange, decision *infertrail.Record, reasons []string) bool {
	g := rt.g
	seq, err := g.sp.RecordNow(ex.inCtx, ex.req, decision)
	if err != nil {
		rt.unrecorded(w, err)
		return false
	}
	ex.reqSeq = seq
	tenant := ex.req.Tenant
	if tenant == "" {
		tenant = g.cfg.Tenant
	}
	start := time.Now()
	a, err := g.cfg.Approvals.Await(ex.inCtx, infertrail.Approval{Tenant: tenant, DecisionID: decision.ID, Governs: ex.req.ID,
		Point: infertrail.PointInferenceRequest, Summary: ex.approvalSummary(), TraceID: ex.req.TraceID, SessionID: ex.req.SessionID})
	ex.held = time.Since(start)
	if err != nil {
		if ex.inCtx.Err() != nil { // the client went away first
			rt.refuseHeld(w, ex, 499, "the client went away before the request could be held for an approval; it was not forwarded", "client_disconnected")
			return false
		}
		g.log.Error("gateway: a request that needs an approval could not be held; it is refused", "provider", rt.p.Name(), "err", err)
		rt.refuseHeld(w, ex, http.StatusServiceUnavailable, "this request needs an approval, and InferTrail cannot hold it for one right now; it was not forwarded; try again", "approval_unavailable")
		return false
	}
	ex.approval = a.ApprovalRecord
	if a.Status == infertrail.ApprovalApproved {
		return true
	}
	rt.refuseHeld(w, ex, http.StatusForbidden, ApprovalRefusal("request", "forwarded", a, reasons), "approval_"+string(a.Status))
	return false
}

// ApprovalRefusal is the message that refuses a held call whose approval
// ended as a says: what (a request, a tool call) was not done (forwarded,
// run), why, and the policy's reasons. The MCP gateway shares it.
func ApprovalRefusal(what, done string, a infertrail.Approval, reasons []string) string {
	var msg string
	switch a.Status {
	case infertrail.ApprovalRejected:
		msg = fmt.Sprintf("this %s needs an approval, and approval %s rejected it", what, a.ID)
	case infertrail.ApprovalExpired:
		msg = fmt.Sprintf("this %s needs an approval, and approval %s expired: no approver decided within %s", what, a.ID, a.Deadline.Sub(a.Requested))
	case infertrail.ApprovalCancelled:
		msg = fmt.Sprintf("this %s needs an approval, and the wait for approval %s was cancelled before anyone decided", what, a.ID)
	default:
		msg = fmt.Sprintf("this %s needs an approval, and the wait for approval %s ended (%s)", what, a.ID, a.Status)
	}
	msg += "; it was not " + done
	if len(reasons) > 0 {
		msg += ": " + strings.Join(reasons, "; ")
	}
	return msg
}

// refuseHeld answers a held call that will not be forwarded, and records
// the refusal as the call's response record, which answers the durable
// request record and follows the approval record that ended the wait.
func (rt *route) refuseHeld(w http.ResponseWriter, ex *exchange, status int, msg, errorType string) {
	g := rt.g
	ex.finished.Store(true)
	ex.status = status
	ex.gatewayBody = rt.p.ErrorBody(status, msg)
	h := w.Header()
	h.Set("traceparent", ex.tc.Header())
	h.Set(HeaderRecordID, ex.req.ID.String()+", "+ex.respID.String())
	h.Set(HeaderRecord, strconv.FormatInt(ex.reqSeq, 10))
	rt.answer(w, status, msg)
	r := ex.responseRecord(Response{}, "", nil)
	r.Attributes["infertrail.refused"] = jsonString(msg)
	r.Attributes["error.type"] = jsonString(errorType)
	if g.sp.Reserve(ex.inCtx) == nil {
		g.sp.WriteLater(r)
	} else {
		g.sp.Persist(r) // the client went away, or no room to wait in: write it now
	}
}

// approvalSummary says what a held request asks, for approvers: names in
// clear, never the prompt.
func (ex *exchange) approvalSummary() string {
	s := ex.rt.ep.Operation + " request"
	if ex.call.Model != "" {
		s += fmt.Sprintf(" for model %q", ex.call.Model)
	}
	s += " via " + ex.rt.p.Name()
	if ex.id.actor.ID != "" {
		s += " by " + ex.id.actor.ID
	}
	return s
}

func statusOf(err error) int {
	if errors.Is(err, infertrail.ErrTooLarge) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// refuse answers a request the gateway will not forward because it is
// malformed or too large, and records the refusal after the fact.
func (rt *route) refuse(w http.ResponseWriter, ex *exchange, body []byte, status int, msg string) {
	rt.answer(w, status, msg)
	r := ex.baseRecord()
	r.ID = infertrail.NewUUID()
	ex.requestAttributes(r)
	r.Attributes["infertrail.refused"] = jsonString(msg)
	r.Attributes["http.response.status_code"] = jsonInt(int64(status))
	if len(body) > 0 {
		v, _ := BodyValue(body)
		r.Content = map[string]json.RawMessage{"request": v}
	}
	if r.Validate(infertrail.Limits{}) != nil {
		r.Content = nil
		r.SessionID, r.Actor.ID = "", ""
	}
	if rt.g.sp.Reserve(ex.inCtx) == nil {
		rt.g.sp.WriteLater(r)
	} else {
		rt.g.sp.Persist(r) // no room to wait in: write it now
	}
}

// rewrite turns the caller's request into the upstream's.
func (rt *route) rewrite(pr *httputil.ProxyRequest) {
	ex := pr.In.Context().Value(ctxKey{}).(*exchange)
	u := pr.Out.URL
	u.Scheme, u.Host = rt.base.Scheme, rt.base.Host
	u.Path, u.RawPath = rt.base.Path+rt.ep.Path, ""
	u.RawQuery = pr.In.URL.RawQuery
	pr.Out.Host = ""
	SetBody(pr.Out, ex.fwd)
	h := pr.Out.Header
	for k := range h {
		if len(k) > 13 && strings.EqualFold(k[:13], "x-infertrail-") {
			delete(h, k)
		}
	}
	if ex.id.replace {
		rt.p.SetCredential(h, ex.id.upstream)
	}
	h.Set("traceparent", ex.tc.Header())
	// Ask only for what the record can be rebuilt from.
	if ae := h.Get("Accept-Encoding"); strings.Contains(strings.ToLower(ae), "gzip") {
		h.Set("Accept-Encoding", "gzip")
	} else {
		h.Del("Accept-Encoding")
	}
}

// modifyResponse starts capturing the upstream's response.
func (rt *route) modifyResponse(resp *http.Response) error {
	ex := resp.Request.Context().Value(ctxKey{}).(*exchange)
	g := rt.g
	ex.status = resp.StatusCode
	for _, k := range [...]string{"x-request-id", "request-id", "apim-request-id"} {
		if v := resp.Header.Get(k); v != "" {
			ex.upstreamID = v
			break
		}
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	ex.stream = mt == "text/event-stream"
	c := &capture{ex: ex, body: resp.Body, respSeq: -1, rec: rt.p.NewResponse(rt.ep, &ex.call, g.cfg.MaxCaptureBytes),
		limit: g.cfg.MaxCaptureBytes, hash: sha256.New(), keepRaw: ex.stream && rt.up.Profile == string(redact.Forensic)}
	switch enc := strings.ToLower(resp.Header.Get("Content-Encoding")); enc {
	case "", "identity":
		if ex.stream {
			c.sse = NewSSEParser(g.cfg.MaxCaptureBytes, c.rec.Event)
		}
	case "gzip":
		c.gzip = true
	default:
		c.undecodable = enc
	}
	h := resp.Header
	h.Set("traceparent", ex.tc.Header())
	h.Set(HeaderRecordID, ex.req.ID.String()+", "+ex.respID.String())
	if ex.reqSeq >= 0 {
		h.Set(HeaderRecord, strconv.FormatInt(ex.reqSeq, 10))
	}
	c.idle = time.AfterFunc(rt.up.IdleTimeout, func() { ex.cancel(errIdle) })
	// A policy on responses decides on a complete 2xx response of a model
	// call; the response is held back for it, unless it is a stream and
	// streams pass through.
	ex.respPolicy = rt.ep.Kind == infertrail.KindInference && resp.StatusCode/100 == 2 && g.decidesResponses()
	if ex.respPolicy && g.cfg.Durability != FailClosed && g.sp.Reserve(ex.ctx) == nil {
		ex.decisionSlot = true
	}
	c.held = (g.cfg.Durability == FailClosed && !ex.stream) || (ex.respPolicy && (!ex.stream || g.cfg.HoldStreams))
	if c.held {
		// Hold the whole response until its record is durable (in
		// fail-closed mode) and its policy has decided.
		held, err := io.ReadAll(io.LimitReader(c, int64(g.cfg.MaxCaptureBytes)+1))
		if err == nil && len(held) > g.cfg.MaxCaptureBytes {
			c.finishOnce("response_too_large")
			return errHoldTooLarge
		}
		if err != nil {
			return err // c has recorded the failure
		}
		resp.Body.Close()
		switch {
		case ex.withheld != "":
			held = ex.gatewayBody
			resp.StatusCode, resp.Status = ex.withheldStatus, fmt.Sprintf("%d %s", ex.withheldStatus, http.StatusText(ex.withheldStatus))
			h.Del("Content-Encoding")
			h.Set("Content-Type", "application/json")
		case ex.delivered != nil:
			held = ex.delivered
			h.Del("Content-Encoding")
		}
		if c.respSeq >= 0 {
			h.Set(HeaderRecord, strconv.FormatInt(ex.reqSeq, 10)+", "+strconv.FormatInt(c.respSeq, 10))
		}
		resp.Body = io.NopCloser(bytes.NewReader(held))
		resp.ContentLength = int64(len(held))
		h.Set("Content-Length", strconv.Itoa(len(held)))
		return nil
	}
	if g.cfg.Durability == FailClosed {
		if resp.Trailer == nil {
			resp.Trailer = http.Header{}
		}
		resp.Trailer[HeaderRecord] = nil
		c.trailer = resp.Trailer
	}
	resp.Body = c
	return nil
}

// errorHandler answers a call that got no usable response from the
// upstream, in the provider's shape, and records what happened.
func (rt *route) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	ex := r.Context().Value(ctxKey{}).(*exchange)
	status, msg, reason := http.StatusBadGateway, "the upstream could not be reached", "upstream_error"
	var ne net.Error
	switch {
	case errors.Is(err, errNotRecorded):
		status, msg, reason = http.StatusServiceUnavailable, errNotRecorded.Error(), "not_recorded"
	case errors.Is(err, errHoldTooLarge):
		msg, reason = errHoldTooLarge.Error(), "response_too_large"
	case ex.inCtx.Err() != nil:
		status, msg, reason = 499, "the client went away", "client_disconnected"
	case errors.Is(context.Cause(ex.ctx), errIdle):
		status, msg, reason = http.StatusGatewayTimeout, "the upstream stopped sending", "idle_timeout"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		status, msg, reason = http.StatusGatewayTimeout, fmt.Sprintf("the upstream did not answer in time (%v)", err), "timeout"
	default:
		msg = fmt.Sprintf("the upstream could not be reached: %v", err)
	}
	if status != 499 {
		ex.gatewayBody = rt.p.ErrorBody(status, msg)
		h := w.Header()
		h.Set("traceparent", ex.tc.Header())
		h.Set(HeaderRecordID, ex.req.ID.String()+", "+ex.respID.String())
		if ex.reqSeq >= 0 {
			h.Set(HeaderRecord, strconv.FormatInt(ex.reqSeq, 10))
		}
		writeProviderError(w, rt.p, status, msg)
	}
	rt.g.m.request(rt.p.Name(), rt.ep.Operation, status)
	if reason != "not_recorded" && reason != "response_too_large" {
		ex.status = status
		ex.finishError(reason, err)
	}
}

// capture is the response body as the proxy reads it: it passes every
// byte on unchanged, and feeds a bounded reconstruction on the side.
type capture struct {
	ex          *exchange
	body        io.ReadCloser
	rec         Reconstructor
	sse         *SSEParser
	raw         []byte // the body, for one not streamed or compressed, up to limit
	limit       int
	over        bool
	gzip        bool
	undecodable string
	hash        hash.Hash
	n           int64
	// keepRaw keeps the stream's bytes as sent (forensic routes).
	keepRaw   bool
	rawStream []byte
	rawOver   bool
	idle      *time.Timer
	trailer   http.Header
	respSeq   int64 // the response record's sequence number, once durable; -1 before
	held      bool  // the response is held back whole until recorded or decided on
}

func (c *capture) Read(p []byte) (int, error) {
	n, err := c.body.Read(p)
	if n > 0 {
		c.observe(p[:n])
	}
	switch {
	case err == io.EOF:
		if c.finishLater() {
			break
		}
		if ferr := c.finishOnce(""); ferr != nil {
			return n, ferr
		}
	case err != nil:
		c.ex.failure = err.Error()
		c.finishOnce(c.ex.reasonFor(err))
	}
	return n, err
}

func (c *capture) Close() error {
	if !c.ex.finished.Load() {
		reason := "client_disconnected"
		if c.ex.inCtx.Err() == nil {
			reason = c.ex.reasonFor(context.Cause(c.ex.ctx))
		}
		c.finishOnce(reason)
	}
	return c.body.Close()
}

func (c *capture) observe(b []byte) {
	if c.n == 0 {
		c.ex.firstByte = c.ex.rt.g.cfg.Now()
	}
	c.n += int64(len(b))
	c.idle.Reset(c.ex.rt.up.IdleTimeout)
	c.hash.Write(b)
	if c.keepRaw && !c.rawOver {
		n := min(len(b), c.limit-len(c.rawStream))
		c.rawStream = append(c.rawStream, b[:n]...)
		c.rawOver = n < len(b)
	}
	if c.sse != nil {
		c.sse.Feed(b)
		return
	}
	if c.over {
		return
	}
	if len(c.raw)+len(b) > c.limit {
		c.over = true
		c.raw = nil
		return
	}
	c.raw = append(c.raw, b...)
}

// finishLater ends the capture of a body read to its end on a goroutine
// of the spool, when nothing waits for its record (not in fail-closed
// mode, nor for a response policy): the record is written after the fact
// anyway, and the client need not wait while the body is parsed. (A
// stream is parsed as it passes, which leaves little to do at its end.)
// It reports whether it did.
func (c *capture) finishLater() bool {
	ex := c.ex
	if ex.stream || ex.rt.g.cfg.Durability == FailClosed || ex.respPolicy || !ex.finished.CompareAndSwap(false, true) {
		return false
	}
	c.idle.Stop()
	ex.rt.g.sp.Go(func() { c.finish("") })
	return true
}

// finishOnce ends the capture: it rebuilds the response and writes its
// record. reason is "" for a response read to its end. In fail-closed
// mode it waits for the record, and an error means it was not written.
func (c *capture) finishOnce(reason string) error {
	if !c.ex.finished.CompareAndSwap(false, true) {
		return nil
	}
	return c.finish(reason)
}

// finish is finishOnce once the exchange's finished flag is set.
func (c *capture) finish(reason string) error {
	c.idle.Stop()
	if !c.over && c.undecodable == "" {
		body := c.raw
		if c.gzip && len(body) > 0 {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err == nil {
				body, err = io.ReadAll(io.LimitReader(zr, int64(c.limit)+1))
			}
			if err != nil || len(body) > c.limit {
				body, c.over = nil, true
			}
		}
		switch {
		case body == nil:
		case c.ex.stream:
			if c.sse == nil {
				NewSSEParser(c.limit, c.rec.Event).Feed(body)
			}
		default:
			c.rec.Body(c.ex.status, body)
		}
	}
	res := c.rec.Result()
	if c.over {
		res.Truncated = true
	}
	if c.sse != nil && c.sse.dropped > 0 {
		res.Truncated = true
	}
	if c.ex.respPolicy && reason == "" && c.decideResponse(&res) {
		return nil // written, and held for an approval
	}
	seq, err := c.ex.finishClaimed(res, reason, c)
	if err != nil {
		return err
	}
	c.respSeq = seq
	if c.trailer != nil {
		c.trailer.Set(HeaderRecord, strconv.FormatInt(c.ex.reqSeq, 10)+", "+strconv.FormatInt(seq, 10))
	}
	return nil
}

func (ex *exchange) reasonFor(err error) string {
	var ne net.Error
	switch {
	case ex.inCtx.Err() != nil:
		return "client_disconnected"
	case errors.Is(context.Cause(ex.ctx), errIdle):
		return "idle_timeout"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case err == nil:
		return "closed_early"
	}
	return "upstream_error"
}

func (ex *exchange) finishRefused(status int, err error) {
	ex.status = status
	ex.finishError("not_forwarded", err)
}

// finishError records a call that ended without a usable response.
func (ex *exchange) finishError(reason string, err error) {
	ex.failure = err.Error()
	ex.finish(Response{}, reason, nil)
}

// finish writes the response record once. In fail-closed mode it waits
// for the record to be durable and returns its sequence number.
func (ex *exchange) finish(res Response, reason string, c *capture) (int64, error) {
	if !ex.finished.CompareAndSwap(false, true) {
		return -1, nil
	}
	return ex.finishClaimed(res, reason, c)
}

// finishClaimed is finish once the exchange's finished flag is set.
func (ex *exchange) finishClaimed(res Response, reason string, c *capture) (int64, error) {
	g := ex.rt.g
	if reason != "" {
		g.m.incomplete(ex.rt.p.Name(), reason)
	} else {
		g.m.request(ex.rt.p.Name(), ex.rt.ep.Operation, ex.status)
	}
	r := ex.responseRecord(res, reason, c)
	if g.cfg.Durability != FailClosed {
		// Where no slot could be held, written anyway, waiting as needed.
		ex.writeLater(r, ex.respDecision)
		return -1, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seqs, err := g.rec.Record(ctx, append([]*infertrail.Record{r}, nonNil(ex.respDecision)...)...)
	if err != nil {
		g.log.Error("gateway: response withheld: its record could not be written", "provider", ex.rt.p.Name(), "err", err)
		return -1, fmt.Errorf("%w: %w", errNotRecorded, err)
	}
	return seqs[0], nil
}

func (ex *exchange) baseRecord() *infertrail.Record {
	r := &infertrail.Record{
		Kind: ex.rt.ep.Kind, Time: ex.start, Tenant: ex.id.tenant, Actor: ex.id.actor,
		SessionID: ex.session, TraceID: ex.tc.TraceID, SpanID: ex.tc.SpanID, ParentSpanID: ex.tc.ParentID,
		Source: ex.rt.p.Name(), Attributes: map[string]json.RawMessage{},
	}
	if p := ex.rt.up.Profile; p != "" {
		r.Attributes[redact.ProfileAttribute] = jsonString(p)
	}
	return r
}

func (ex *exchange) requestAttributes(r *infertrail.Record) {
	a := r.Attributes
	a["infertrail.phase"] = jsonString("request")
	a["gen_ai.operation.name"] = jsonString(ex.rt.ep.Operation)
	a["gen_ai.provider.name"] = jsonString(ex.rt.p.Name())
	a["http.request.method"] = jsonString(ex.rt.ep.Method)
	a["url.path"] = jsonString("/" + ex.rt.p.Name() + ex.rt.ep.Path)
	a["server.address"] = jsonString(ex.rt.base.Host)
	if ex.call.Model != "" {
		a["gen_ai.request.model"] = jsonString(ex.call.Model)
	}
	if ex.call.Stream {
		a["infertrail.stream"] = json.RawMessage("true")
	}
	if ex.id.vkey != "" {
		a["infertrail.virtual_key"] = jsonString(ex.id.vkey)
	}
	if ex.id.token != "" {
		a["infertrail.token"] = jsonString(ex.id.token)
	}
	if ex.id.claimed != "" {
		a["infertrail.claimed_agent"] = jsonString(ex.id.claimed)
	}
	if ex.id.actor.ID != "" && ex.id.vkey == "" && ex.id.token == "" {
		// Without a virtual key the agent id is the caller's claim; the
		// credential fingerprint is what was authenticated upstream.
		a["infertrail.agent_claimed"] = json.RawMessage("true")
	}
}

func (ex *exchange) requestRecord(body []byte) *infertrail.Record {
	r := ex.baseRecord()
	r.ID = infertrail.NewUUID() // set here: the record is written concurrently with reads of its id
	ex.requestAttributes(r)
	for k, v := range ex.call.Attributes {
		if b, err := json.Marshal(v); err == nil {
			r.Attributes[k] = b
		}
	}
	if len(body) > 0 {
		r.Content = map[string]json.RawMessage{"request": body}
	}
	return r
}

// maxToolCallsInClear and maxToolCallBytes bound the tool calls listed in
// a record's attributes, within the trail's limit on one attribute; all of
// them stay in its content.
const (
	maxToolCallsInClear = 128
	maxToolCallBytes    = 12 << 10
)

func (ex *exchange) responseRecord(res Response, reason string, c *capture) *infertrail.Record {
	g := ex.rt.g
	end := g.cfg.Now()
	r := ex.baseRecord()
	r.ID, r.Time = ex.respID, end
	r.Links = []infertrail.Link{{Rel: "answers", ID: ex.req.ID}}
	if !ex.approval.IsZero() {
		r.Links = append(r.Links, infertrail.Link{Rel: "follows", ID: ex.approval})
	}
	a := r.Attributes
	a["infertrail.phase"] = jsonString("response")
	a["gen_ai.operation.name"] = jsonString(ex.rt.ep.Operation)
	a["gen_ai.provider.name"] = jsonString(ex.rt.p.Name())
	if ex.call.Model != "" {
		a["gen_ai.request.model"] = jsonString(ex.call.Model)
	}
	if ex.id.vkey != "" {
		a["infertrail.virtual_key"] = jsonString(ex.id.vkey)
	}
	if ex.status != 0 {
		a["http.response.status_code"] = jsonInt(int64(ex.status))
	}
	a["infertrail.duration_ns"] = jsonInt(end.Sub(ex.start).Nanoseconds())
	if ex.held > 0 {
		a["infertrail.held_ns"] = jsonInt(ex.held.Nanoseconds())
	}
	if !ex.firstByte.IsZero() && ex.stream {
		a["infertrail.time_to_first_chunk_ns"] = jsonInt(ex.firstByte.Sub(ex.start).Nanoseconds())
	}
	if ex.stream {
		a["infertrail.stream"] = json.RawMessage("true")
	}
	if ex.upstreamID != "" {
		a["infertrail.upstream.request_id"] = jsonString(ex.upstreamID)
	}
	if res.ID != "" {
		a["gen_ai.response.id"] = jsonString(res.ID)
	}
	if res.Model != "" {
		a["gen_ai.response.model"] = jsonString(res.Model)
	}
	if res.SystemFingerprint != "" {
		a["openai.response.system_fingerprint"] = jsonString(res.SystemFingerprint)
	}
	if len(res.FinishReasons) > 0 {
		a["gen_ai.response.finish_reasons"] = jsonValue(res.FinishReasons)
	}
	for k, v := range res.Usage {
		a[k] = jsonInt(v)
	}
	if n := len(res.ToolCalls); n > 0 {
		type tc struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}
		var list []tc
		size := 0
		for _, t := range res.ToolCalls {
			size += len(t.ID) + len(t.Name) + 20
			if len(list) == maxToolCallsInClear || size > maxToolCallBytes {
				break
			}
			list = append(list, tc{t.ID, t.Name})
		}
		a["gen_ai.response.tool_calls"] = jsonValue(list)
		if len(list) < n {
			a["infertrail.tool_calls_total"] = jsonInt(int64(n))
		}
	}
	for k, v := range res.Attributes {
		if b, err := json.Marshal(v); err == nil {
			a[k] = b
		}
	}
	if reason == "client_disconnected" && ex.stream && !res.Done && res.Error != nil {
		// The upstream's error event ended the stream; SDKs close the
		// connection when they read one, often before it is seen here.
		reason = ""
	}
	switch {
	case reason != "":
		a["infertrail.incomplete"] = json.RawMessage("true")
		a["infertrail.incomplete_reason"] = jsonString(reason)
		a["error.type"] = jsonString(reason)
		if ex.failure != "" {
			a["infertrail.error"] = jsonString(ex.failure)
		}
	case ex.status >= 400:
		a["error.type"] = jsonString(strconv.Itoa(ex.status))
	case res.Error != nil && res.Done:
		// A response that ended properly but reports a failure (a failed
		// or incomplete Responses API stream).
		a["error.type"] = jsonString("response_error")
	case ex.stream && !res.Done:
		a["infertrail.incomplete"] = json.RawMessage("true")
		if res.Error != nil {
			a["infertrail.incomplete_reason"] = jsonString("error_event")
			a["error.type"] = jsonString("error_event")
		} else {
			a["infertrail.incomplete_reason"] = jsonString("no_terminal_event")
		}
	}
	if res.Truncated {
		a["infertrail.truncated"] = json.RawMessage("true")
	}
	if ex.withheld != "" {
		a["infertrail.withheld"] = jsonString(ex.withheld)
		a["error.type"] = jsonString("withheld")
	}
	if len(ex.respRedactions) > 0 {
		a["infertrail.redactions"] = jsonValue(ex.respRedactions)
	}
	if ex.policyFailure != "" {
		a["infertrail.policy_error"] = jsonString(ex.policyFailure)
	}
	if c != nil {
		a["infertrail.response.bytes"] = jsonInt(c.n)
		a["infertrail.response.sha256"] = jsonString("sha256:" + hex.EncodeToString(c.hash.Sum(nil)))
		if c.undecodable != "" {
			a["infertrail.response.content_encoding"] = jsonString(c.undecodable)
		}
	}
	content := map[string]json.RawMessage{}
	switch {
	case res.Body != nil:
		content["response"] = res.Body
	case ex.gatewayBody != nil:
		content["response"] = ex.gatewayBody
	}
	if res.Error != nil {
		content["error"] = res.Error
	}
	switch {
	case ex.withheld != "":
		content["response.delivered"] = ex.gatewayBody
	case ex.delivered != nil:
		content["response.delivered"] = ex.delivered
	}
	if c != nil && c.keepRaw && c.n > 0 {
		// The stream as the client received it: SSE is text, so a JSON
		// string holds it (invalid UTF-8, which SSE forbids, is replaced).
		content["response.raw"] = jsonString(strings.ToValidUTF8(string(c.rawStream), "\uFFFD"))
		if c.rawOver {
			a["infertrail.response.raw_truncated"] = json.RawMessage("true")
		}
	}
	if len(content) > 0 {
		r.Content = content
	}
	return r
}

func jsonString(s string) json.RawMessage { return infertrail.AppendString(nil, s) }

func jsonInt(n int64) json.RawMessage { return strconv.AppendInt(nil, n, 10) }

func jsonValue(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}

// nonNil returns r as a list: empty when r is nil.
func nonNil(r *infertrail.Record) []*infertrail.Record {
	if r == nil {
		return nil
	}
	return []*infertrail.Record{r}
}
