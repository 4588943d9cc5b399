// Package investigate reconstructs what happened from the log: the
// investigation index, timelines of traces and sessions, and the detectors
// that flag what went wrong.
package investigate

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/infertrail/infertrail"
)

// Attr returns a string attribute of r, or "" when it is absent or not a
// string.
func Attr(r *infertrail.Record, name string) string {
	v, ok := r.Attributes[name]
	if !ok || len(v) == 0 || v[0] != '"' {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return ""
	}
	return s
}

// has reports whether r carries the content field name, stored or only
// committed.
func has(r *infertrail.Record, field string) bool {
	if _, ok := r.Commitments[field]; ok {
		return true
	}
	_, ok := r.Content[field]
	return ok
}

// ToolCallRequest is a tool call a model asked for, as its inference
// record lists it in gen_ai.response.tool_calls.
type ToolCallRequest struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// RequestedToolCalls returns the tool calls an inference record says the
// model asked for.
func RequestedToolCalls(r *infertrail.Record) []ToolCallRequest {
	v, ok := r.Attributes["gen_ai.response.tool_calls"]
	if !ok {
		return nil
	}
	var list []ToolCallRequest
	if json.Unmarshal(v, &list) != nil {
		return nil
	}
	return slices.DeleteFunc(list, func(t ToolCallRequest) bool { return t.ID == "" })
}

// Model is the model that answered an inference: the response's model
// when the record has it, else the requested one.
func Model(r *infertrail.Record) string {
	if m := Attr(r, "gen_ai.response.model"); m != "" {
		return m
	}
	return Attr(r, "gen_ai.request.model")
}

// An Op is one operation: a gateway's request record and the response
// record that answers it, or a single record that says it all.
type Op struct {
	Request  *infertrail.Record // the first record of the operation
	Response *infertrail.Record // the record that answers Request, if separate
}

// Records returns the operation's records in order.
func (o *Op) Records() []*infertrail.Record {
	if o.Response == nil {
		return []*infertrail.Record{o.Request}
	}
	return []*infertrail.Record{o.Request, o.Response}
}

// Kind is the operation's record kind.
func (o *Op) Kind() infertrail.Kind { return o.Request.Kind }

// Attr returns the response's attribute when it has it, else the
// request's.
func (o *Op) Attr(name string) string {
	if o.Response != nil {
		if v := Attr(o.Response, name); v != "" {
			return v
		}
	}
	return Attr(o.Request, name)
}

// Has reports whether either record carries the content field.
func (o *Op) Has(field string) bool {
	return has(o.Request, field) || o.Response != nil && has(o.Response, field)
}

// Time is when the operation started.
func (o *Op) Time() time.Time { return o.Request.Time }

// Seqs returns the sequence numbers of the operation's records.
func (o *Op) Seqs() []int64 {
	if o.Response == nil {
		return []int64{o.Request.Seq}
	}
	return []int64{o.Request.Seq, o.Response.Seq}
}

// pending reports whether the operation is a request still waiting for its
// response record.
func (o *Op) pending() bool {
	return o.Response == nil && Attr(o.Request, "infertrail.phase") == "request"
}

// refused reports whether the gateway refused the operation (a policy
// denial, a missing approval): it never reached its target.
func (o *Op) refused() bool {
	for _, r := range o.Records() {
		if _, ok := r.Attributes["infertrail.refused"]; ok {
			return true
		}
		switch Attr(r, "error.type") {
		case "-32011", "-32003": // MCP: denied by policy (-32003 before 2026-11-27)
			return true
		}
	}
	return false
}

// Group is the records of one subject (a trace, a session) in log order,
// paired into operations.
type Group struct {
	Subject string
	Records []*infertrail.Record // by Seq
	Ops     []*Op                // by the Seq of their first record
	byID    map[infertrail.UUID]*infertrail.Record
	bySpan  map[string][]*infertrail.Record
	opOf    map[*infertrail.Record]*Op
}

// NewGroup pairs records into operations. Records need not be sorted.
func NewGroup(subject string, recs []*infertrail.Record) *Group {
	g := &Group{Subject: subject, Records: slices.Clone(recs),
		byID: map[infertrail.UUID]*infertrail.Record{}, bySpan: map[string][]*infertrail.Record{},
		opOf: map[*infertrail.Record]*Op{}}
	slices.SortFunc(g.Records, func(a, b *infertrail.Record) int { return compareInt(a.Seq, b.Seq) })
	for _, r := range g.Records {
		g.byID[r.ID] = r
		if r.SpanID != "" {
			g.bySpan[r.SpanID] = append(g.bySpan[r.SpanID], r)
		}
	}
	for _, r := range g.Records {
		if Attr(r, "infertrail.phase") == "response" {
			if req := g.answered(r); req != nil {
				if op := g.opOf[req]; op != nil && op.Response == nil {
					op.Response = r
					g.opOf[r] = op
					continue
				}
			}
		}
		op := &Op{Request: r}
		g.Ops = append(g.Ops, op)
		g.opOf[r] = op
	}
	return g
}

// answered returns the request record a response record answers, if it is
// in the group and of the same kind.
func (g *Group) answered(r *infertrail.Record) *infertrail.Record {
	for _, l := range r.Links {
		if l.Rel != "answers" {
			continue
		}
		if req := g.byID[l.ID]; req != nil && req.Kind == r.Kind && Attr(req, "infertrail.phase") == "request" {
			return req
		}
	}
	return nil
}

// Op returns the operation a record belongs to.
func (g *Group) Op(r *infertrail.Record) *Op { return g.opOf[r] }

// ByID returns the group's record with the id, or nil.
func (g *Group) ByID(id infertrail.UUID) *infertrail.Record { return g.byID[id] }

// causalRels are the link relations that point from a record to what
// caused or contains it.
var causalRels = map[string]bool{"answers": true, "caused_by": true, "child_of": true,
	"follows": true, "governs": true, "approves": true, "grounds": true, "uses": true}

// Parent returns the record r hangs under in a timeline: the target of its
// first causal link in the group, else the record of its parent span (the
// earliest one, a request rather than its response), else nil.
func (g *Group) Parent(r *infertrail.Record) *infertrail.Record {
	for _, l := range r.Links {
		if !causalRels[l.Rel] {
			continue
		}
		if p := g.byID[l.ID]; p != nil && p != r {
			return p
		}
	}
	if r.ParentSpanID != "" {
		if ps := g.bySpan[r.ParentSpanID]; len(ps) > 0 && ps[0] != r {
			return ps[0]
		}
	}
	return nil
}

// ancestors calls fn for every record above r, through causal links and
// parent spans, nearest first, each once; fn returns false to stop.
func (g *Group) ancestors(r *infertrail.Record, fn func(*infertrail.Record) bool) {
	seen := map[*infertrail.Record]bool{r: true}
	queue := []*infertrail.Record{r}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		var up []*infertrail.Record
		for _, l := range cur.Links {
			if causalRels[l.Rel] {
				if p := g.byID[l.ID]; p != nil {
					up = append(up, p)
				}
			}
		}
		if cur.ParentSpanID != "" {
			up = append(up, g.bySpan[cur.ParentSpanID]...)
		}
		// The request a response answers shares its causes.
		if op := g.opOf[cur]; op != nil && op.Response == cur {
			up = append(up, op.Request)
		}
		for _, p := range up {
			if seen[p] {
				continue
			}
			seen[p] = true
			if !fn(p) {
				return
			}
			queue = append(queue, p)
		}
	}
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
