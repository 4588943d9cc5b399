package gateway

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/infertrail/infertrail"
)

// Provider adapts the gateway to one provider's wire format. The gateway
// does the proxying, the identity, the durability and the records; a
// Provider only reads requests, rebuilds responses and writes errors in its
// provider's own shape. Implementations must be safe for concurrent use.
type Provider interface {
	// Name is the provider's gen_ai.provider.name ("openai", "anthropic").
	// The provider's endpoints are mounted under /{Name}.
	Name() string
	// Endpoints lists the proxied endpoints.
	Endpoints() []Endpoint
	// ParseRequest reads what the records need from a request body. A body
	// the provider would refuse as malformed gives an error wrapping
	// infertrail.ErrInvalid whose message names the problem; the request is
	// then answered 400 and not forwarded. body is empty for GET requests.
	ParseRequest(ep Endpoint, body []byte) (Call, error)
	// NewResponse returns a reconstructor for the response to one call.
	// limit bounds the bytes the reconstructor may keep; past it, it must
	// stop accumulating and report Truncated.
	NewResponse(ep Endpoint, c *Call, limit int) Reconstructor
	// Credential returns the caller's API key from a request's headers,
	// or "" if there is none.
	Credential(h http.Header) string
	// SetCredential puts key in outbound request headers in place of the
	// caller's credential. An empty key removes the credential.
	SetCredential(h http.Header, key string)
	// ErrorBody returns an error response body in the provider's own shape
	// for an HTTP status the gateway answers itself (400, 401, 404, 413,
	// 502, 503, 504), carrying message.
	ErrorBody(status int, message string) []byte
}

// Endpoint is one proxied endpoint of a provider.
type Endpoint struct {
	Method string // "POST" or "GET"
	Path   string // under the provider's mount, e.g. "/v1/chat/completions"
	// Operation is the gen_ai.operation.name of calls to the endpoint:
	// chat, embeddings, … ; "list_models" for the model list.
	Operation string
	// Kind is the kind of the endpoint's records: infertrail.KindInference
	// for model calls, KindDownstreamCall for others (the model list).
	Kind infertrail.Kind
}

// Call is what a request says, read by Provider.ParseRequest.
type Call struct {
	Model  string // the requested model; "" if the request names none
	Stream bool   // the request asks for a streamed response
	// Attributes are request parameters kept in clear in the request record,
	// under OpenTelemetry GenAI names where one exists
	// (gen_ai.request.max_tokens, gen_ai.request.temperature, …).
	// Values must marshal to JSON. Never put message content here.
	Attributes map[string]any
}

// Reconstructor rebuilds one response on the side, as the bytes pass
// through to the client. It is used by one goroutine at a time.
type Reconstructor interface {
	// Event receives one server-sent event of a streamed response, in
	// order: its event name ("" when the event has none) and its data, the
	// data lines joined by "\n". data is only valid during the call. An
	// event whose data passed the limit arrives with nil data, so that its
	// name (a terminal event, say) is still seen.
	Event(name string, data []byte)
	// Body receives the whole decoded body of a response that was not
	// streamed, if it fit within the limit. It is called at most once.
	Body(status int, body []byte)
	// Result reports what was rebuilt; it is called once, at the end, even
	// if the response broke off.
	Result() Response
}

// Response is a response as rebuilt by a Reconstructor.
type Response struct {
	ID                string   // gen_ai.response.id
	Model             string   // gen_ai.response.model: the model that answered
	SystemFingerprint string   // openai.response.system_fingerprint, when given
	FinishReasons     []string // gen_ai.response.finish_reasons
	// Usage holds token counts under their OpenTelemetry names:
	// gen_ai.usage.input_tokens, gen_ai.usage.output_tokens, and others the
	// provider reports (cache reads, reasoning tokens) under
	// gen_ai.usage.* names.
	Usage map[string]int64
	// ToolCalls are the tool calls the model requested, in order.
	ToolCalls []ToolCall
	// Attributes are any further metadata to keep in clear. Never message
	// content.
	Attributes map[string]any
	// Body is the response as one JSON value: the body as received, in
	// canonical form (BodyValue), or, for a stream, the object the provider
	// would have sent had the request not streamed, rebuilt from the events
	// (text concatenated, tool-call arguments assembled). For a body that
	// is not JSON, a JSON string of it. nil when nothing was received.
	Body json.RawMessage
	// Error is the provider's error object, when the response carried one
	// (an error status's body, or an error event in a stream).
	Error json.RawMessage
	// Done reports that the response ended as the provider ends a complete
	// one: a non-streamed body, or the stream's terminal event
	// ([DONE], message_stop, response.completed).
	Done bool
	// Truncated reports that the response passed the limit, so Body is
	// incomplete or missing.
	Truncated bool
}

// ToolCall is a tool call a model requested.
type ToolCall struct {
	ID        string // the provider's call id, which later tool_call records link to
	Name      string
	Arguments string // the arguments as the model produced them (JSON text, maybe malformed)
}

// BodyValue returns a body as a JSON value for a record's content: its
// canonical form when it is JSON as records hold it (I-JSON), else a JSON
// string of its text, invalid UTF-8 replaced; ok reports the first. One
// pass checks the body and writes the form the trail stores, so the
// record's own check finds it canonical and keeps it as it is.
func BodyValue(b []byte) (v json.RawMessage, ok bool) {
	if c, err := infertrail.Canonicalize(b); err == nil {
		return c, true
	}
	return jsonString(strings.ToValidUTF8(string(b), "\uFFFD")), false
}
