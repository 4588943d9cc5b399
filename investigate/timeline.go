package investigate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
)

// Verification statuses of a timeline record.
const (
	Verified   = "verified"   // its leaf is included in the latest signed checkpoint
	Failed     = "failed"     // its leaf does not match the signed tree: tampered with
	Pending    = "pending"    // not yet covered by a signed checkpoint
	Unverified = "unverified" // not checked (no checkpoint source)
)

// Node is one record in a timeline, with the records that hang under it.
type Node struct {
	Seq      int64              `json:"seq"`
	ID       string             `json:"id"`
	Kind     infertrail.Kind    `json:"kind"`
	Time     time.Time          `json:"time"`
	Actor    string             `json:"actor,omitempty"`
	Label    string             `json:"label"`
	Model    string             `json:"model,omitempty"`
	Tool     string             `json:"tool,omitempty"`
	Decision string             `json:"decision,omitempty"`
	Phase    string             `json:"phase,omitempty"`
	Status   string             `json:"status"`
	Problem  string             `json:"problem,omitempty"`
	Findings []string           `json:"findings,omitempty"`
	Leaf     json.RawMessage    `json:"record"`
	Children []*Node            `json:"children,omitempty"`
	Depth    int                `json:"-"`
	Record   *infertrail.Record `json:"-"`
}

// Timeline is one trace or session as a tree: prompt, policy decision,
// response, tool calls requested and executed, downstream calls and
// credential use, in time order.
type Timeline struct {
	Subject   string               `json:"subject"`
	Tenants   []string             `json:"tenants"`
	Records   int                  `json:"records"`
	TreeSize  int64                `json:"checkpoint_size"`
	Roots     []*Node              `json:"roots"`
	Findings  []infertrail.Finding `json:"findings"`
	Truncated bool                 `json:"truncated,omitempty"`
	Broken    int                  `json:"failed"`
}

// Walk calls fn for every node, depth first, in timeline order.
func (t *Timeline) Walk(fn func(n *Node)) {
	var walk func([]*Node)
	walk = func(ns []*Node) {
		for _, n := range ns {
			fn(n)
			walk(n.Children)
		}
	}
	walk(t.Roots)
}

// Timeline reconstructs the subject (an index key such as "trace=…" or
// "session=…") in the given tenants (nil: every tenant). It answers
// infertrail.ErrNotFound when no record of the subject is visible.
func (e *Engine) Timeline(ctx context.Context, key string, tenants []string) (*Timeline, error) {
	q := infertrail.Query{Tenants: tenants, Keys: []string{key}, Limit: infertrail.MaxQueryLimit}
	var entries []infertrail.Entry
	if err := e.st.Query(ctx, q, func(en *infertrail.Entry) error {
		entries = append(entries, en.Clone())
		return nil
	}); err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%s: %w", key, infertrail.ErrNotFound)
	}
	slices.Reverse(entries)
	t := &Timeline{Subject: key, Records: len(entries), Truncated: len(entries) == infertrail.MaxQueryLimit}
	recs := make([]*infertrail.Record, 0, len(entries))
	broken := map[int64]error{}
	tenantSet := map[string]bool{}
	for i := range entries {
		tenantSet[entries[i].Tenant] = true
		r, err := infertrail.ParseLeaf(entries[i].Leaf)
		if err != nil {
			broken[entries[i].Seq] = err
			r = &infertrail.Record{Seq: entries[i].Seq, ID: entries[i].ID, Kind: entries[i].Kind,
				Time: time.Unix(0, entries[i].Time).UTC(), Tenant: entries[i].Tenant}
		}
		recs = append(recs, r)
	}
	for tn := range tenantSet {
		t.Tenants = append(t.Tenants, tn)
	}
	slices.Sort(t.Tenants)
	g := NewGroup(key, recs)

	status, size, err := e.verify(ctx, entries)
	if err != nil {
		return nil, err
	}
	t.TreeSize = size
	flagged, err := e.flagged(ctx, key, tenants)
	if err != nil {
		return nil, err
	}

	asked := map[string]*infertrail.Record{}
	for _, r := range g.Records {
		for _, tc := range RequestedToolCalls(r) {
			asked[tc.ID] = r
		}
	}
	nodes := make(map[*infertrail.Record]*Node, len(g.Records))
	for i, r := range g.Records {
		n := &Node{Seq: r.Seq, ID: r.ID.String(), Kind: r.Kind, Time: r.Time, Actor: r.Actor.ID,
			Model: Model(r), Tool: Attr(r, "gen_ai.tool.name"), Decision: Attr(r, "policy.result"),
			Phase: Attr(r, "infertrail.phase"), Status: status[i].status, Problem: status[i].problem,
			Findings: flagged[r.Seq], Leaf: entries[i].Leaf, Record: r}
		if err := broken[r.Seq]; err != nil {
			n.Status, n.Problem = Failed, "the stored leaf does not parse: "+err.Error()
		}
		if n.Status == Failed {
			t.Broken++
		}
		n.Label = label(r)
		nodes[r] = n
	}
	for _, r := range g.Records {
		n := nodes[r]
		p := g.Parent(r)
		if p == nil && r.Kind == infertrail.KindToolCall {
			if id := Attr(r, "gen_ai.tool.call.id"); id != "" && asked[id] != nil && asked[id] != r {
				p = asked[id]
			}
		}
		if p != nil && !cycles(g, r, p, asked) {
			nodes[p].Children = append(nodes[p].Children, n)
		} else {
			t.Roots = append(t.Roots, n)
		}
	}
	var order func(ns []*Node, depth int)
	order = func(ns []*Node, depth int) {
		slices.SortStableFunc(ns, func(a, b *Node) int {
			if c := a.Time.Compare(b.Time); c != 0 {
				return c
			}
			return compareInt(a.Seq, b.Seq)
		})
		for _, n := range ns {
			n.Depth = depth
			order(n.Children, depth+1)
		}
	}
	order(t.Roots, 0)

	seen := map[infertrail.UUID]bool{}
	for seq := range flagged {
		err := e.st.Findings(ctx, infertrail.FindingQuery{Tenants: tenants, Seq: seq, Limit: 100}, func(f *infertrail.Finding) error {
			if !seen[f.ID] {
				seen[f.ID] = true
				c := *f
				c.Records = slices.Clone(f.Records)
				t.Findings = append(t.Findings, c)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(t.Findings, func(a, b infertrail.Finding) int { return compareInt(a.N, b.N) })
	return t, nil
}

// cycles reports whether hanging r under p would close a loop.
func cycles(g *Group, r, p *infertrail.Record, asked map[string]*infertrail.Record) bool {
	seen := map[*infertrail.Record]bool{r: true}
	for cur := p; cur != nil; {
		if seen[cur] {
			return true
		}
		seen[cur] = true
		next := g.Parent(cur)
		if next == nil && cur.Kind == infertrail.KindToolCall {
			next = asked[Attr(cur, "gen_ai.tool.call.id")]
		}
		cur = next
	}
	return false
}

// label is a short description of a record for a timeline.
func label(r *infertrail.Record) string {
	s := string(r.Kind)
	switch r.Kind {
	case infertrail.KindInference:
		if op := Attr(r, "gen_ai.operation.name"); op != "" {
			s += " " + op
		}
		if m := Model(r); m != "" {
			s += " " + m
		}
		if n := len(RequestedToolCalls(r)); n > 0 {
			s += fmt.Sprintf(" (asks for %d tool call(s))", n)
		}
	case infertrail.KindPolicyDecision:
		s += " " + Attr(r, "policy.result")
		if p := Attr(r, "policy.point"); p != "" {
			s += " at " + p
		}
	case infertrail.KindToolCall:
		s += " " + Attr(r, "gen_ai.tool.name")
	case infertrail.KindDownstreamCall:
		if m := Attr(r, "http.request.method"); m != "" {
			s += " " + m
		}
		if u := Attr(r, "url.full"); u != "" {
			s += " " + u
		} else if a := Attr(r, "server.address"); a != "" {
			s += " " + a
		}
	case infertrail.KindCredential:
		s += " " + Attr(r, "credential.event")
	case infertrail.KindApproval:
		s += " " + Attr(r, "approval.decision")
		if a := Attr(r, "approval.approver"); a != "" {
			s += " by " + a
		}
	case infertrail.KindAccess:
		s += " " + Attr(r, "access.action")
	}
	if ph := Attr(r, "infertrail.phase"); ph != "" {
		s += " [" + ph + "]"
	}
	return s
}

// flagged returns the detectors that flagged each record of the subject.
func (e *Engine) flagged(ctx context.Context, key string, tenants []string) (map[int64][]string, error) {
	out := map[int64][]string{}
	for _, d := range Detectors {
		q := infertrail.Query{Tenants: tenants, Keys: []string{key, infertrail.IndexKey(infertrail.IndexFinding, d)}, Limit: infertrail.MaxQueryLimit}
		if err := e.st.Query(ctx, q, func(en *infertrail.Entry) error {
			out[en.Seq] = append(out[en.Seq], d)
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type recordStatus struct{ status, problem string }

// verify checks each entry's leaf against the latest signed checkpoint
// with an inclusion proof from the stored tree hashes. Proofs of nearby
// records share most of their hashes; they are read once.
func (e *Engine) verify(ctx context.Context, entries []infertrail.Entry) ([]recordStatus, int64, error) {
	out := make([]recordStatus, len(entries))
	if e.cfg.Checkpoint == nil {
		for i := range out {
			out[i].status = Unverified
		}
		return out, 0, nil
	}
	size, root, err := e.cfg.Checkpoint(ctx)
	if errors.Is(err, infertrail.ErrNotFound) {
		size, err = 0, nil // no checkpoint signed yet: every record is pending
	}
	if err != nil {
		return nil, 0, fmt.Errorf("verify timeline: %w", err)
	}
	hr := &memoHashes{ctx: ctx, r: e.st, memo: map[int64]tlog.Hash{}}
	// Learn every stored hash the proofs need (a dry run over zero
	// hashes), and read them in one query.
	var need []int64
	dry := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		need = append(need, idx...)
		return make([]tlog.Hash, len(idx)), nil
	})
	for i := range entries {
		if entries[i].Seq < size {
			tlog.ProveRecord(size, entries[i].Seq, dry)
		}
	}
	slices.Sort(need)
	if _, err := hr.ReadHashes(slices.Compact(need)); err != nil {
		return nil, 0, fmt.Errorf("verify timeline: %w", err)
	}
	for i := range entries {
		en := &entries[i]
		if en.Seq >= size {
			out[i].status = Pending
			continue
		}
		p, err := tlog.ProveRecord(size, en.Seq, hr)
		if err != nil {
			if hr.err != nil {
				return nil, 0, hr.err
			}
			out[i] = recordStatus{Failed, "no inclusion proof: " + err.Error()}
			continue
		}
		if err := tlog.CheckRecord(p, size, root, en.Seq, tlog.RecordHash(en.Leaf)); err != nil {
			out[i] = recordStatus{Failed, "the stored leaf is not the leaf the signed checkpoint covers"}
			continue
		}
		out[i].status = Verified
	}
	return out, size, nil
}

// memoHashes is a tlog.HashReader over the store that reads each stored
// hash once.
type memoHashes struct {
	ctx  context.Context
	r    infertrail.HashReader
	memo map[int64]tlog.Hash
	err  error
}

func (m *memoHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	var missing []int64
	for _, i := range indexes {
		if _, ok := m.memo[i]; !ok {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		hs, err := m.r.ReadHashes(m.ctx, missing)
		if err != nil {
			m.err = err
			return nil, err
		}
		for j, i := range missing {
			m.memo[i] = hs[j]
		}
	}
	out := make([]tlog.Hash, len(indexes))
	for j, i := range indexes {
		out[j] = m.memo[i]
	}
	return out, nil
}
