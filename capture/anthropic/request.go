package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway"
)

// Bounds on the request parameters kept in clear, so that a request record
// stays well within the trail's limits on one attribute; the whole request
// is in the record's content.
const (
	maxListItems  = 128 // tool names, stop sequences
	maxItemBytes  = 256 // one tool name or stop sequence
	maxValueBytes = 256 // a free-form string such as metadata.user_id
)

// request is what ParseRequest reads of a Messages API request. Fields
// other than model and stream are read leniently: a value of the wrong
// type is left out of the record rather than refused, since Anthropic
// decides what it accepts.
type request struct {
	Model         json.RawMessage `json:"model"`
	Stream        json.RawMessage `json:"stream"`
	MaxTokens     json.RawMessage `json:"max_tokens"`
	Temperature   json.RawMessage `json:"temperature"`
	TopP          json.RawMessage `json:"top_p"`
	TopK          json.RawMessage `json:"top_k"`
	StopSequences json.RawMessage `json:"stop_sequences"`
	Tools         json.RawMessage `json:"tools"`
	ToolChoice    json.RawMessage `json:"tool_choice"`
	Thinking      json.RawMessage `json:"thinking"`
	Metadata      json.RawMessage `json:"metadata"`
	ServiceTier   json.RawMessage `json:"service_tier"`
	InferenceGeo  json.RawMessage `json:"inference_geo"`
	Speed         json.RawMessage `json:"speed"`
	OutputConfig  json.RawMessage `json:"output_config"`
}

// ParseRequest reads a request's model, stream flag and parameters.
//
// Parameters are kept under their OpenTelemetry names
// (gen_ai.request.max_tokens, .temperature, .top_p, .top_k,
// .stop_sequences), the names of the offered tools under
// gen_ai.request.tool_names, and Anthropic's own parameters under
// anthropic.request.*: tool_choice.type, tool_choice.name,
// tool_choice.disable_parallel_tool_use, thinking.type,
// thinking.budget_tokens, service_tier, inference_geo, speed,
// output_config.effort, output_config.format.type and metadata.user_id; a
// JSON schema output format is also gen_ai.output.type "json". Message
// content is never among them.
//
// A body that is not a JSON object, or has no model, or a model that is
// not a non-empty string, is refused with an error wrapping
// infertrail.ErrInvalid. GET endpoints take no body.
func (Provider) ParseRequest(ep gateway.Endpoint, body []byte) (gateway.Call, error) {
	if ep.Method == "GET" {
		return gateway.Call{}, nil
	}
	var req request
	t := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(t) == 0:
		return gateway.Call{}, fmt.Errorf("request body is empty: want a JSON object: %w", infertrail.ErrInvalid)
	case t[0] != '{':
		if !json.Valid(body) {
			return gateway.Call{}, fmt.Errorf("request body is not valid JSON: %w", infertrail.ErrInvalid)
		}
		return gateway.Call{}, fmt.Errorf("request body is JSON but not an object: %w", infertrail.ErrInvalid)
	}
	if err := json.Unmarshal(body, &req); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return gateway.Call{}, fmt.Errorf("request body is not valid JSON (at byte %d): %w", se.Offset, infertrail.ErrInvalid)
		}
		return gateway.Call{}, fmt.Errorf("request body is not valid JSON: %w", infertrail.ErrInvalid)
	}
	var c gateway.Call
	switch {
	case len(req.Model) == 0 || string(req.Model) == "null":
		return c, fmt.Errorf("model: field required: %w", infertrail.ErrInvalid)
	case json.Unmarshal(req.Model, &c.Model) != nil:
		return c, fmt.Errorf("model: want a string: %w", infertrail.ErrInvalid)
	case c.Model == "":
		return c, fmt.Errorf("model: is empty: %w", infertrail.ErrInvalid)
	}
	json.Unmarshal(req.Stream, &c.Stream)

	a := map[string]any{}
	if n, ok := intParam(req.MaxTokens); ok {
		a["gen_ai.request.max_tokens"] = n
	}
	if f, ok := floatParam(req.Temperature); ok {
		a["gen_ai.request.temperature"] = f
	}
	if f, ok := floatParam(req.TopP); ok {
		a["gen_ai.request.top_p"] = f
	}
	if f, ok := floatParam(req.TopK); ok {
		a["gen_ai.request.top_k"] = f
	}
	var stops []string
	if json.Unmarshal(req.StopSequences, &stops) == nil && len(stops) > 0 {
		a["gen_ai.request.stop_sequences"] = boundList(stops)
	}
	var tools []struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(req.Tools, &tools) == nil && len(tools) > 0 {
		names := make([]string, 0, min(len(tools), maxListItems))
		for _, t := range tools {
			names = append(names, t.Name)
		}
		a["gen_ai.request.tool_names"] = boundList(names)
		if len(tools) > maxListItems {
			a["anthropic.request.tool_count"] = len(tools)
		}
	}
	var choice struct {
		Type                   string `json:"type"`
		Name                   string `json:"name"`
		DisableParallelToolUse *bool  `json:"disable_parallel_tool_use"`
	}
	if json.Unmarshal(req.ToolChoice, &choice) == nil {
		setString(a, "anthropic.request.tool_choice.type", choice.Type)
		setString(a, "anthropic.request.tool_choice.name", choice.Name)
		if choice.DisableParallelToolUse != nil {
			a["anthropic.request.tool_choice.disable_parallel_tool_use"] = *choice.DisableParallelToolUse
		}
	}
	var thinking struct {
		Type         string          `json:"type"`
		BudgetTokens json.RawMessage `json:"budget_tokens"`
	}
	if json.Unmarshal(req.Thinking, &thinking) == nil {
		setString(a, "anthropic.request.thinking.type", thinking.Type)
		if n, ok := intParam(thinking.BudgetTokens); ok {
			a["anthropic.request.thinking.budget_tokens"] = n
		}
	}
	var meta struct {
		UserID string `json:"user_id"`
	}
	if json.Unmarshal(req.Metadata, &meta) == nil {
		setString(a, "anthropic.request.metadata.user_id", meta.UserID)
	}
	setString(a, "anthropic.request.service_tier", stringParam(req.ServiceTier))
	setString(a, "anthropic.request.inference_geo", stringParam(req.InferenceGeo))
	setString(a, "anthropic.request.speed", stringParam(req.Speed))
	var out struct {
		Effort string `json:"effort"`
		Format struct {
			Type string `json:"type"`
		} `json:"format"`
	}
	if json.Unmarshal(req.OutputConfig, &out) == nil {
		setString(a, "anthropic.request.output_config.effort", out.Effort)
		setString(a, "anthropic.request.output_config.format.type", out.Format.Type)
		if out.Format.Type == "json_schema" {
			a["gen_ai.output.type"] = "json"
		}
	}
	if len(a) > 0 {
		c.Attributes = a
	}
	return c, nil
}

// intParam reads an integer parameter; absent, null or of another type
// gives false.
func intParam(raw json.RawMessage) (int64, bool) {
	var n int64
	if len(raw) == 0 || raw[0] == 'n' || json.Unmarshal(raw, &n) != nil {
		return 0, false
	}
	return n, true
}

// floatParam reads a number parameter; absent, null or of another type
// gives false.
func floatParam(raw json.RawMessage) (float64, bool) {
	var f float64
	if len(raw) == 0 || raw[0] == 'n' || json.Unmarshal(raw, &f) != nil {
		return 0, false
	}
	return f, true
}

// stringParam reads a string parameter; anything else gives "".
func stringParam(raw json.RawMessage) string {
	var s string
	json.Unmarshal(raw, &s)
	return s
}

func setString(a map[string]any, k, v string) {
	if v != "" {
		a[k] = clip(v, maxValueBytes)
	}
}

// boundList returns at most maxListItems items of l, each clipped to
// maxItemBytes.
func boundList(l []string) []string {
	out := make([]string, 0, min(len(l), maxListItems))
	for _, s := range l[:min(len(l), maxListItems)] {
		out = append(out, clip(s, maxItemBytes))
	}
	return out
}

// clip cuts s to at most n bytes, on a character boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
