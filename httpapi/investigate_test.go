package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/httpapi"
	"github.com/infertrail/infertrail/investigate"
)

type queryAnswer struct {
	Records []struct {
		Seq    int64           `json:"seq"`
		Kind   string          `json:"kind"`
		Tenant string          `json:"tenant"`
		Record json.RawMessage `json:"record"`
	} `json:"records"`
	NextCursor     string `json:"next_cursor"`
	IndexedThrough int64  `json:"indexed_through"`
}

func (s *testServer) query(tb testing.TB, path string) queryAnswer {
	tb.Helper()
	resp, b := s.get(tb, path)
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s = %d %s", path, resp.StatusCode, b)
	}
	var a queryAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		tb.Fatal(err)
	}
	return a
}

func seqsOf(a queryAnswer) []int64 {
	var out []int64
	for _, r := range a.Records {
		out = append(out, r.Seq)
	}
	return out
}

func TestQueryRecords(t *testing.T) {
	s := newTestServer(t, nil)
	s.fill(t, 0, 25)                               // tool calls 0..24 in testTrace
	s.ingest(t, "application/json", exampleRecord) // 25: an inference in sess-42
	// The query sees what was committed before it: no waiting for the
	// background indexer.
	a := s.query(t, "/v1/records?trace="+testTrace+"&kind=inference")
	if got := seqsOf(a); !slices.Equal(got, []int64{25}) || a.IndexedThrough != 26 {
		t.Fatalf("trace+kind = %v (indexed %d), want [25]", got, a.IndexedThrough)
	}
	for _, tc := range []struct {
		query string
		want  []int64
	}{
		{"model=gpt-4o-2024-08-06", []int64{25}},
		{"model=gpt-4o", []int64{25}},
		{"actor=agent:payments-bot", []int64{25}},
		{"session=sess-42", []int64{25}},
		{"tool=lookup&limit=3", []int64{24, 23, 22}},
		{"tool=lookup&limit=3&cursor=22", []int64{21, 20, 19}},
		{"kind=inference,tool_call&limit=2", []int64{25, 24}},
		{"tenant=acme&kind=inference", []int64{25}},
		{"from=2026-11-26T10:00:00Z&to=2026-11-26T10:00:01Z", []int64{25}},
		{"q=invoice+acme", []int64{25}},
		{"q=nothing-like-this", nil},
	} {
		if got := seqsOf(s.query(t, "/v1/records?"+tc.query)); !slices.Equal(got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.query, got, tc.want)
		}
	}
	// Paging visits every record once.
	var all []int64
	cursor := ""
	for range 30 {
		a := s.query(t, "/v1/records?trace="+testTrace+"&limit=7"+cursor)
		all = append(all, seqsOf(a)...)
		if a.NextCursor == "" {
			break
		}
		cursor = "&cursor=" + a.NextCursor
	}
	slices.Sort(all)
	if len(all) != 26 || all[0] != 0 || all[25] != 25 {
		t.Errorf("paging gave %v", all)
	}
}

const seventeenWords = "w01+w02+w03+w04+w05+w06+w07+w08+w09+w10+w11+w12+w13+w14+w15+w16+w17"

func TestQueryRecordsRefusesBadInput(t *testing.T) {
	s := newTestServer(t, nil)
	s.fill(t, 0, 2)
	before := s.size(t)
	for _, tc := range []struct{ query, field string }{
		{"kind=nope", "kind"},
		{"from=yesterday", "from"},
		{"to=2026-01-01", "to"},
		{"from=2026-11-27T10:00:00Z&to=2026-11-27T09:00:00Z", "to"},
		{"finding=made_up", "finding"},
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"cursor=-1", "cursor"},
		{"colour=red", "colour"},
		{"trace=", "trace"},
		{"q=a", "q"},
		{"q=" + seventeenWords, "q"},
	} {
		resp, b := s.get(t, "/v1/records?"+tc.query)
		wantError(t, resp, b, http.StatusBadRequest, "invalid", -1, tc.field)
	}
	if s.size(t) != before {
		t.Error("a refused query changed the log")
	}
}

func TestSearchNeedsContentAndIsRecorded(t *testing.T) {
	s := newAuthServer(t, nil)
	ingester, _ := s.token(t, "acme", time.Hour, infertrail.RoleIngest)
	if resp, b := s.as(t, ingester, "POST", "/v1/records", "application/json", exampleRecord, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest = %d %s", resp.StatusCode, b)
	}
	auditor, _ := s.token(t, "acme", time.Hour, infertrail.RoleAuditor)
	investigator, _ := s.token(t, "acme", time.Hour, infertrail.RoleInvestigator)
	resp, b := s.as(t, auditor, "GET", "/v1/records?q=invoice", "", "", nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("an auditor's search = %d %s, want 403", resp.StatusCode, b)
	}
	before := s.size(t)
	resp, b = s.as(t, investigator, "GET", "/v1/records?q=invoice", "", "", http.Header{"X-Infertrail-Reason": {"case 7"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"id":"`+exampleID+`"`) {
		t.Fatalf("an investigator's search = %d %s", resp.StatusCode, b)
	}
	if s.size(t) != before+1 {
		t.Fatal("the search left no access record")
	}
	_, b = s.as(t, auditor, "GET", "/v1/records?kind=access&limit=1", "", "", nil)
	var last queryAnswer
	if err := json.Unmarshal(b, &last); err != nil || len(last.Records) != 1 {
		t.Fatalf("access records: %s", b)
	}
	rec := string(last.Records[0].Record)
	for _, want := range []string{`"access.action":"search"`, `"access.reason":"case 7"`, `"access.search.words":1`} {
		if !strings.Contains(rec, want) {
			t.Errorf("access record %s lacks %s", rec, want)
		}
	}
	if strings.Contains(rec, "invoice") {
		t.Errorf("the access record holds the searched word: %s", rec)
	}
}

func TestTimelineAndDetect(t *testing.T) {
	s := newTestServer(t, nil)
	s.ingest(t, "application/json", exampleRecord) // asks for nothing; complete
	s.fill(t, 0, 2)                                // two tool calls nobody asked for, no decision
	s.checkpoint(t)
	resp, b := s.get(t, "/v1/traces/"+testTrace)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("timeline = %d %s", resp.StatusCode, b)
	}
	var tl struct {
		Subject string `json:"subject"`
		Records int    `json:"records"`
		Roots   []struct {
			Seq    int64  `json:"seq"`
			Status string `json:"status"`
			Label  string `json:"label"`
		} `json:"roots"`
	}
	if err := json.Unmarshal(b, &tl); err != nil {
		t.Fatal(err)
	}
	if tl.Records != 3 || len(tl.Roots) != 3 || tl.Roots[0].Status != "verified" {
		t.Errorf("timeline = %s", b)
	}
	if resp, b := s.get(t, "/v1/traces/0af7651916cd43dd8448eb211c80319c"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown trace = %d %s", resp.StatusCode, b)
	}
	resp, b = s.do(t, "POST", "/v1/detect?window=0s&trace="+testTrace, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("detect = %d %s", resp.StatusCode, b)
	}
	for _, want := range []string{`"detector":"unattributed_action"`, `"detector":"policy_gap"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("detect found %s, want %s", b, want)
		}
	}
	a := s.query(t, "/v1/records?finding=unattributed_action")
	if got := seqsOf(a); !slices.Equal(got, []int64{2, 1}) {
		t.Errorf("records with an unattributed_action finding = %v", got)
	}
	resp, b = s.get(t, "/v1/findings?detector=policy_gap&limit=1")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"next_cursor"`) {
		t.Errorf("findings page = %d %s", resp.StatusCode, b)
	}
	resp, b = s.do(t, "POST", "/v1/detect?trace="+testTrace+"&session=x", nil, nil)
	wantError(t, resp, b, http.StatusBadRequest, "invalid", -1, "trace")
	resp, b = s.get(t, "/v1/findings?detector=nope")
	wantError(t, resp, b, http.StatusBadRequest, "invalid", -1, "detector")
}

// TestReadsRefusedWhenTheIndexCannotCatchUp: a read that needs the index
// is refused with 503 when the index cannot be brought up to date (it may
// still hold what an erasure had to delete), with a message that says so
// and not the cause, which may name the server's files.
func TestReadsRefusedWhenTheIndexCannotCatchUp(t *testing.T) {
	s := newTestServer(t, func(c *httpapi.Config) {
		terms, err := investigate.NewTerms(bytes.Repeat([]byte{7}, 32))
		if err != nil {
			t.Fatal(err)
		}
		broken := func(context.Context, []infertrail.Entry, func(infertrail.BlobID) bool) (map[infertrail.BlobID][]byte, error) {
			return nil, errors.New("index /srv/secret/path/infertrail-index.db: damaged")
		}
		engine, err := investigate.New(investigate.Config{Store: c.Log.Store().(investigate.Store), Terms: terms, Content: broken})
		if err != nil {
			t.Fatal(err)
		}
		c.Investigate = engine
	})
	s.ingest(t, "application/json", exampleRecord)
	for _, path := range []string{"/v1/records?trace=" + testTrace, "/v1/records?q=invoice", "/v1/traces/" + testTrace} {
		resp, b := s.get(t, path)
		e := wantError(t, resp, b, http.StatusServiceUnavailable, "index_unavailable", -1, "")
		if strings.Contains(e.Message, "/srv/secret") || !strings.Contains(e.Message, "log") {
			t.Errorf("GET %s: message %q", path, e.Message)
		}
	}
}
