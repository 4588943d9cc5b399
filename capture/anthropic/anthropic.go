// Package anthropic adapts the LLM gateway to Anthropic's Messages API wire format.
package anthropic

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway"
)

// Operation names of the endpoints besides the Messages API itself.
const (
	OperationCountTokens = "count_tokens" // POST /v1/messages/count_tokens
	OperationListModels  = "list_models"  // GET /v1/models
)

// Provider is the Anthropic provider of the gateway. Its zero value is
// ready to use and safe for concurrent use.
//
// It serves POST /v1/messages (operation "chat", inference records),
// and, as downstream calls, POST /v1/messages/count_tokens
// (operation "count_tokens") and GET /v1/models (operation "list_models").
//
// Token usage follows the OpenTelemetry GenAI conventions:
// gen_ai.usage.input_tokens counts every input token, cached or not —
// Anthropic's input_tokens plus cache_read_input_tokens plus
// cache_creation_input_tokens — and the two cache counts are also given as
// gen_ai.usage.cache_read.input_tokens and
// gen_ai.usage.cache_creation.input_tokens. Anthropic's own input_tokens
// (the tokens neither read from nor written to the cache) is kept as the
// attribute anthropic.usage.input_tokens. Thinking tokens, when reported,
// are gen_ai.usage.reasoning.output_tokens; they are part of output_tokens.
type Provider struct{}

var _ gateway.Provider = Provider{}

// Name returns "anthropic".
func (Provider) Name() string { return "anthropic" }

// Endpoints returns the Messages API, token counting and the model list.
func (Provider) Endpoints() []gateway.Endpoint {
	return []gateway.Endpoint{
		{Method: http.MethodPost, Path: "/v1/messages", Operation: "chat", Kind: infertrail.KindInference},
		{Method: http.MethodPost, Path: "/v1/messages/count_tokens", Operation: OperationCountTokens, Kind: infertrail.KindDownstreamCall},
		{Method: http.MethodGet, Path: "/v1/models", Operation: OperationListModels, Kind: infertrail.KindDownstreamCall},
	}
}

// Credential returns the caller's key: the x-api-key header, or else the
// token of an "Authorization: Bearer" header (OAuth-style callers).
func (Provider) Credential(h http.Header) string {
	if k := strings.TrimSpace(h.Get("X-Api-Key")); k != "" {
		return k
	}
	a := strings.TrimSpace(h.Get("Authorization"))
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// SetCredential sets x-api-key to key and removes any Authorization
// header; an empty key removes both.
func (Provider) SetCredential(h http.Header, key string) {
	h.Del("Authorization")
	if key == "" {
		h.Del("X-Api-Key")
		return
	}
	h.Set("X-Api-Key", key)
}

// ErrorBody returns Anthropic's error shape,
// {"type":"error","error":{"type":…,"message":…}}, with the error type
// Anthropic uses for status.
func (Provider) ErrorBody(status int, message string) []byte {
	b, err := json.Marshal(errorResponse{Type: "error", Error: errorObject{Type: ErrorType(status), Message: message}})
	if err != nil { // unreachable: both are strings
		return []byte(`{"type":"error","error":{"type":"api_error","message":"internal error"}}`)
	}
	return b
}

type errorResponse struct {
	Type  string      `json:"type"`
	Error errorObject `json:"error"`
}

type errorObject struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// ErrorType returns the error type Anthropic's API gives with an HTTP
// status: invalid_request_error (400 and other 4xx), authentication_error
// (401), billing_error (402), permission_error (403), not_found_error
// (404), request_too_large (413), rate_limit_error (429), timeout_error
// (504), overloaded_error (503, 529) and api_error (500 and other 5xx).
func ErrorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusPaymentRequired:
		return "billing_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusGatewayTimeout:
		return "timeout_error"
	case http.StatusServiceUnavailable, 529:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}
