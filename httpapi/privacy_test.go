package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/infertrail/infertrail/redact"
)

func TestEraseAPI(t *testing.T) {
	s := newTestServer(t, nil)
	s.fill(t, 0, 3) // tenant acme, no session
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	size := s.size(t)
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
		msg        string
		field      string
	}{
		{"no reason", `{"scope":"tenant=acme"}`, 400, "invalid", "reason", ""},
		{"no tenant", `{"scope":"session=x","reason":"r"}`, 400, "invalid", "tenant", ""},
		{"unknown field", `{"scope":"tenant=acme","reason":"r","everything":true}`, 400, "invalid", "everything", "body"},
		{"not JSON", `scope=tenant=acme`, 400, "invalid", "JSON", "body"},
		{"too large", `{"scope":"tenant=acme","reason":"` + strings.Repeat("x", 20000) + `"}`, 413, "too_large", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := s.do(t, "POST", "/v1/erasures", jsonHeader, []byte(tc.body))
			e := wantError(t, resp, b, tc.status, tc.code, -1, tc.field)
			if !strings.Contains(e.Message, tc.msg) {
				t.Errorf("message %q does not name %q", e.Message, tc.msg)
			}
		})
	}
	if n := s.size(t); n != size {
		t.Fatalf("refused erasures appended %d records", n-size)
	}

	// A hold blocks the erasure with 409.
	resp, b := s.do(t, "POST", "/v1/holds", jsonHeader, []byte(`{"scope":"tenant=acme","reason":"litigation"}`))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/holds = %d %s", resp.StatusCode, b)
	}
	var hold struct{ ID, Tenant, Scope, Reason string }
	json.Unmarshal(b, &hold)
	resp, b = s.do(t, "POST", "/v1/erasures", jsonHeader, []byte(`{"scope":"tenant=acme","reason":"request"}`))
	if e := wantError(t, resp, b, http.StatusConflict, "held", -1, ""); !strings.Contains(e.Message, hold.ID) {
		t.Errorf("held erasure: %q does not name the hold %s", e.Message, hold.ID)
	}
	resp, b = s.get(t, "/v1/holds?tenant=acme")
	if resp.StatusCode != 200 || !strings.Contains(string(b), hold.ID) {
		t.Errorf("GET /v1/holds = %d %s", resp.StatusCode, b)
	}
	resp, b = s.do(t, "POST", "/v1/holds/"+hold.ID+"/release", jsonHeader, []byte(`{"tenant":"acme","reason":"closed"}`))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("release = %d %s", resp.StatusCode, b)
	}
	resp, b = s.do(t, "POST", "/v1/holds/"+hold.ID+"/release", jsonHeader, []byte(`{"tenant":"acme"}`))
	wantError(t, resp, b, http.StatusNotFound, "not_found", -1, "")

	resp, b = s.do(t, "POST", "/v1/erasures", jsonHeader, []byte(`{"scope":"tenant=acme","reason":"GDPR request 9","authority":"DPO"}`))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/erasures = %d %s", resp.StatusCode, b)
	}
	var out struct {
		Seq  int64 `json:"seq"`
		Keys int   `json:"keys"`
	}
	json.Unmarshal(b, &out)
	if out.Keys == 0 {
		t.Errorf("erasure answer %s: no keys erased", b)
	}
	// Reading the content now says who erased it.
	resp, b = s.get(t, "/v1/records/1?content=true")
	var rec struct {
		Content  map[string]json.RawMessage `json:"content"`
		ErasedBy *int64                     `json:"content_erased_by"`
	}
	json.Unmarshal(b, &rec)
	if resp.StatusCode != 200 || rec.ErasedBy == nil || *rec.ErasedBy != out.Seq || len(rec.Content) != 0 {
		t.Errorf("GET erased record = %d %s; want content_erased_by %d", resp.StatusCode, b, out.Seq)
	}
}

func TestFingerprintAPI(t *testing.T) {
	s := newTestServer(t, nil)
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	const cred = "sk-proj-planted-credential-0123456789"
	fp, _ := redact.NewFingerprinter(bytes.Repeat([]byte{7}, 32))
	// Two records made with the credential, one without.
	var recs []string
	for i := range 3 {
		r := testRecord(i)
		if i != 1 {
			r = strings.Replace(r, `"tenant":"acme",`, `"tenant":"acme","actor":{"id":"agent:x","credential_fingerprint":"`+fp.Of(cred)+`"},`, 1)
		}
		recs = append(recs, r)
	}
	s.ingest(t, "application/json", "["+strings.Join(recs, ",")+"]")

	resp, b := s.do(t, "POST", "/v1/fingerprints", jsonHeader, []byte(`{"credential":"`+cred+`"}`))
	var out struct {
		Fingerprint string
		Uses        []struct{ Seq int64 }
		NextBefore  *int64 `json:"next_before"`
	}
	json.Unmarshal(b, &out)
	if resp.StatusCode != 200 || out.Fingerprint != fp.Of(cred) || len(out.Uses) != 2 || out.Uses[0].Seq != 2 || out.Uses[1].Seq != 0 || out.NextBefore != nil {
		t.Fatalf("POST /v1/fingerprints = %d %s; want %s used by records 2 and 0", resp.StatusCode, b, fp.Of(cred))
	}
	// Continue below a sequence number.
	resp, b = s.do(t, "POST", "/v1/fingerprints", jsonHeader, []byte(`{"credential":"`+cred+`","before":1}`))
	json.Unmarshal(b, &out)
	if resp.StatusCode != 200 || len(out.Uses) != 1 || out.Uses[0].Seq != 0 {
		t.Errorf("before 1: %s", b)
	}
	// The requests are recorded with the fingerprint, never the credential.
	for _, leaf := range s.leaves(t) {
		if strings.Contains(string(leaf), cred) {
			t.Errorf("the credential is in a record: %s", leaf)
		}
	}
	resp, b = s.do(t, "POST", "/v1/fingerprints", jsonHeader, []byte(`{}`))
	wantError(t, resp, b, http.StatusBadRequest, "invalid", -1, "credential")
	resp, b = s.do(t, "POST", "/v1/fingerprints", jsonHeader, []byte(`{"credential":"x","before":-1}`))
	wantError(t, resp, b, http.StatusBadRequest, "invalid", -1, "before")
}

// TestIngestReservedAttributes refuses attributes only the server sets.
func TestIngestReservedAttributes(t *testing.T) {
	s := newTestServer(t, nil)
	for _, a := range []string{"capture.profile", "redaction.findings"} {
		rec := strings.Replace(testRecord(1), `"n":1`, `"n":1,"`+a+`":"forensic"`, 1)
		resp, b := s.post(t, "application/json", "["+testRecord(0)+","+rec+"]")
		wantError(t, resp, b, http.StatusBadRequest, "invalid", 1, `attributes["`+a+`"]`)
	}
	if n := s.size(t); n != 0 {
		t.Errorf("%d records stored from refused batches", n)
	}
}
