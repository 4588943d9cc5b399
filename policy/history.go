package policy

import (
	"sync"
	"time"

	"github.com/infertrail/infertrail"
)

// history remembers the latest decisions of each session, so that a
// policy can see them as the input's "earlier": a session that was denied
// a tool a moment ago, or asked for approval twice. It is bounded: at most
// perSession decisions of each session, and two generations of sessions of
// at most maxSessions each (the older generation is dropped when the newer
// fills). It is this node's memory: decisions taken on other nodes of a
// cluster are not in it.
type history struct {
	mu       sync.Mutex
	cur, old map[string][]earlier
	max      int
}

type earlier struct {
	point    infertrail.PolicyPoint
	result   infertrail.PolicyResult
	policyID string
	at       time.Time
}

const (
	historyPerSession = 32
	historySessions   = 50_000
)

func newHistory(maxSessions int) *history {
	return &history{cur: map[string][]earlier{}, old: map[string][]earlier{}, max: maxSessions}
}

// get returns the session's earlier decisions, oldest first, as the input
// document's "earlier" array.
func (h *history) get(session string) []any {
	h.mu.Lock()
	list, ok := h.cur[session]
	if !ok {
		list = h.old[session]
	}
	h.mu.Unlock()
	out := make([]any, len(list))
	for i, e := range list {
		out[i] = map[string]any{"point": string(e.point), "result": string(e.result), "policy_id": e.policyID,
			"time": e.at.UTC().Format(time.RFC3339Nano)}
	}
	return out
}

// add appends a decision to the session's history.
func (h *history) add(session string, e earlier) {
	h.mu.Lock()
	defer h.mu.Unlock()
	list, ok := h.cur[session]
	if !ok {
		list = h.old[session]
		delete(h.old, session)
		if len(h.cur) >= h.max {
			h.old, h.cur = h.cur, map[string][]earlier{}
		}
	}
	list = append(list, e)
	if len(list) > historyPerSession {
		list = list[len(list)-historyPerSession:]
	}
	h.cur[session] = list
}
