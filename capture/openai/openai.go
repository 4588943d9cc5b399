// Package openai is the LLM gateway's adapter for the OpenAI API and the
// servers compatible with it (vLLM, Ollama, Azure OpenAI's v1 API, …): it
// reads requests, rebuilds chat-completion and Responses API streams, and
// writes errors in OpenAI's shape.
//
// Both the Chat Completions and the Responses API are recorded with
// gen_ai.operation.name "chat", the OpenTelemetry GenAI value for a chat
// model call, whichever API shape carried it; url.path tells them apart.
package openai

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway"
)

// Provider is the OpenAI wire format. Its zero value is ready to use.
type Provider struct{}

var _ gateway.Provider = Provider{}

// Operation names (gen_ai.operation.name).
const (
	OperationChat       = "chat"
	OperationEmbeddings = "embeddings"
	OperationListModels = "list_models"
)

// The endpoints' paths.
const (
	PathChat       = "/v1/chat/completions"
	PathResponses  = "/v1/responses"
	PathEmbeddings = "/v1/embeddings"
	PathModels     = "/v1/models"
)

// Name implements gateway.Provider.
func (Provider) Name() string { return "openai" }

// Endpoints implements gateway.Provider.
func (Provider) Endpoints() []gateway.Endpoint {
	return []gateway.Endpoint{
		{Method: http.MethodPost, Path: PathChat, Operation: OperationChat, Kind: infertrail.KindInference},
		{Method: http.MethodPost, Path: PathResponses, Operation: OperationChat, Kind: infertrail.KindInference},
		{Method: http.MethodPost, Path: PathEmbeddings, Operation: OperationEmbeddings, Kind: infertrail.KindInference},
		{Method: http.MethodGet, Path: PathModels, Operation: OperationListModels, Kind: infertrail.KindDownstreamCall},
	}
}

// Credential implements gateway.Provider: "Authorization: Bearer KEY", or
// Azure's "api-key" header.
func (Provider) Credential(h http.Header) string {
	if v := h.Get("Authorization"); len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return strings.TrimSpace(h.Get("api-key"))
}

// SetCredential implements gateway.Provider.
func (Provider) SetCredential(h http.Header, key string) {
	h.Del("api-key")
	h.Del("Authorization")
	if key != "" {
		h.Set("Authorization", "Bearer "+key)
	}
}

// ErrorBody implements gateway.Provider with OpenAI's error object.
func (Provider) ErrorBody(status int, message string) []byte {
	typ, code := "invalid_request_error", ""
	switch {
	case status == http.StatusUnauthorized:
		code = "invalid_api_key"
	case status == http.StatusNotFound:
		code = "unknown_url"
	case status == http.StatusRequestEntityTooLarge:
		code = "request_too_large"
	case status == http.StatusTooManyRequests:
		typ, code = "requests", "rate_limit_exceeded"
	case status >= 500:
		typ = "server_error"
	}
	e := struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	}{Message: message, Type: typ}
	if code != "" {
		e.Code = &code
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	return b
}

// maxListed bounds the items of a list attribute (tool names, stop
// sequences), and maxString a string attribute, so that a request record
// stays within the trail's attribute limits.
const (
	maxListed = 128
	maxString = 256
)

// ParseRequest implements gateway.Provider. Only the model is required;
// parameters of an unexpected type are left out of the record rather than
// refused, since the upstream decides what it accepts.
func (Provider) ParseRequest(ep gateway.Endpoint, body []byte) (gateway.Call, error) {
	if ep.Method == http.MethodGet {
		return gateway.Call{}, nil
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return gateway.Call{}, fmt.Errorf("the request body is empty; want a JSON object: %w", infertrail.ErrInvalid)
	}
	if body[0] != '{' {
		return gateway.Call{}, fmt.Errorf("the request body is not a JSON object: %w", infertrail.ErrInvalid)
	}
	// The members are matched by their exact names, as the upstream
	// matches them ({"model":…,"MODEL":…} must not fool the record), and
	// referenced in body rather than copied (messages may be large).
	var members map[string]ref
	if err := json.Unmarshal(body, &members); err != nil {
		return gateway.Call{}, fmt.Errorf("the request body is not valid JSON: %v: %w", err, infertrail.ErrInvalid)
	}
	m := func(name string) json.RawMessage { return json.RawMessage(members[name]) }
	var c gateway.Call
	if m("model") == nil {
		return c, fmt.Errorf(`the request has no "model": %w`, infertrail.ErrInvalid)
	}
	if json.Unmarshal(m("model"), &c.Model) != nil || c.Model == "" {
		return c, fmt.Errorf(`"model" must be a non-empty string: %w`, infertrail.ErrInvalid)
	}
	if len(c.Model) > maxString {
		return c, fmt.Errorf(`"model" is longer than %d bytes: %w`, maxString, infertrail.ErrInvalid)
	}
	json.Unmarshal(m("stream"), &c.Stream)
	a := map[string]any{}
	// Numbers are kept as doubles, which any record can hold: a literal
	// beyond what a double holds exactly (a 64-bit seed) is rounded
	// rather than refused.
	number := func(attr string, vs ...json.RawMessage) {
		for _, v := range vs {
			if f, ok := number(v); ok {
				a[attr] = f
				return
			}
		}
	}
	number("gen_ai.request.max_tokens", m("max_completion_tokens"), m("max_tokens"), m("max_output_tokens"))
	number("gen_ai.request.temperature", m("temperature"))
	number("gen_ai.request.top_p", m("top_p"))
	number("gen_ai.request.frequency_penalty", m("frequency_penalty"))
	number("gen_ai.request.presence_penalty", m("presence_penalty"))
	number("gen_ai.request.seed", m("seed"))
	number("gen_ai.request.choice.count", m("n"))
	number("gen_ai.embeddings.dimension.count", m("dimensions"))
	if stops := stringList(m("stop")); len(stops) > 0 {
		a["gen_ai.request.stop_sequences"] = stops
	}
	if s := str(m("encoding_format")); s != "" {
		a["gen_ai.request.encoding_formats"] = []string{s}
	}
	if s := str(m("service_tier")); s != "" {
		a["openai.request.service_tier"] = s
	}
	var reasoning struct {
		Effort json.RawMessage `json:"effort"`
	}
	json.Unmarshal(m("reasoning"), &reasoning)
	if s := cmp.Or(str(m("reasoning_effort")), str(reasoning.Effort)); s != "" {
		a["openai.request.reasoning_effort"] = s
	}
	var parallel *bool
	if json.Unmarshal(m("parallel_tool_calls"), &parallel) == nil && parallel != nil {
		a["openai.request.parallel_tool_calls"] = *parallel
	}
	if t := outputType(m("response_format"), m("text")); t != "" {
		a["gen_ai.output.type"] = t
	}
	if s := str(m("previous_response_id")); s != "" {
		a["openai.request.previous_response_id"] = s
	}
	if id := conversationID(m("conversation")); id != "" {
		a["gen_ai.conversation.id"] = id
	}
	var opts struct {
		IncludeUsage *bool `json:"include_usage"`
	}
	if json.Unmarshal(m("stream_options"), &opts) == nil && opts.IncludeUsage != nil {
		a["openai.request.stream_include_usage"] = *opts.IncludeUsage
	}
	if names := toolNames(m("tools")); len(names) > 0 {
		a["gen_ai.request.tool_names"] = names
	}
	if len(a) > 0 {
		c.Attributes = a
	}
	return c, nil
}

// ref is a JSON value referenced in the input it was decoded from, not
// copied: it is valid as long as that input is.
type ref []byte

func (r *ref) UnmarshalJSON(b []byte) error {
	*r = b
	return nil
}

// str reads a JSON string of at most maxString bytes; "" if v is none.
func str(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) != nil || len(s) > maxString {
		return ""
	}
	return s
}

// outputType maps the requested response format (Chat Completions'
// response_format, the Responses API's text.format) to gen_ai.output.type.
func outputType(responseFormat, text json.RawMessage) string {
	var f struct {
		Type string `json:"type"`
	}
	var t struct {
		Format struct {
			Type string `json:"type"`
		} `json:"format"`
	}
	if json.Unmarshal(responseFormat, &f) != nil || f.Type == "" {
		if json.Unmarshal(text, &t) != nil {
			return ""
		}
		f.Type = t.Format.Type
	}
	switch f.Type {
	case "json_object", "json_schema":
		return "json"
	case "text":
		return "text"
	}
	return ""
}

// conversationID reads the Responses API's conversation: an id, or an
// object with one.
func conversationID(v json.RawMessage) string {
	var id string
	if json.Unmarshal(v, &id) != nil {
		var o struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(v, &o) != nil {
			return ""
		}
		id = o.ID
	}
	if len(id) > maxString {
		return ""
	}
	return id
}

// number reads a JSON number as a double.
func number(v json.RawMessage) (float64, bool) {
	if len(v) == 0 || !(v[0] == '-' || '0' <= v[0] && v[0] <= '9') {
		return 0, false
	}
	var f float64
	return f, json.Unmarshal(v, &f) == nil
}

// stringList reads a string or a list of strings, bounded.
func stringList(v json.RawMessage) []string {
	var one string
	if json.Unmarshal(v, &one) == nil {
		if one == "" || len(one) > maxString {
			return nil
		}
		return []string{one}
	}
	var list []string
	if json.Unmarshal(v, &list) != nil {
		return nil
	}
	var out []string
	for _, s := range list {
		if len(out) < maxListed && len(s) <= maxString {
			out = append(out, s)
		}
	}
	return out
}

// toolNames lists the names of the offered tools, in the Chat Completions
// shape ({"type":"function","function":{"name":…}}) or the Responses API's
// ({"type":"function","name":…}; built-in tools by their type).
func toolNames(v json.RawMessage) []string {
	var tools []struct {
		Type     string `json:"type"`
		Name     string `json:"name"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if json.Unmarshal(v, &tools) != nil {
		return nil
	}
	var out []string
	for _, t := range tools {
		name := t.Function.Name
		if name == "" {
			name = t.Name
		}
		if name == "" {
			name = t.Type
		}
		if name != "" && len(name) <= maxString && len(out) < maxListed {
			out = append(out, name)
		}
	}
	return out
}

// NewResponse implements gateway.Provider.
func (Provider) NewResponse(ep gateway.Endpoint, c *gateway.Call, limit int) gateway.Reconstructor {
	switch ep.Path {
	case PathChat:
		return &chatResponse{limit: limit}
	case PathResponses:
		return &responsesResponse{limit: limit}
	}
	return &plainResponse{}
}
