package redact_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/redact"
)

func captureRecord(tenant string) *infertrail.Record {
	return &infertrail.Record{
		Kind: infertrail.KindInference, Tenant: tenant, SessionID: "sess-1",
		Actor: infertrail.Actor{ID: "agent:a", OnBehalfOf: "alice@example.com"},
		Attributes: map[string]json.RawMessage{
			"gen_ai.request.model": []byte(`"m"`),
			"note":                 []byte(`"token ghp_` + strings.Repeat("a1B2", 9) + `"`),
		},
		Content: map[string]json.RawMessage{
			"prompt":         []byte(`"card 4111 1111 1111 1111, mail bob@example.com"`),
			"tool.arguments": []byte(`{"api_key":"sk-proj-` + strings.Repeat("Zx9", 16) + `"}`),
		},
	}
}

func TestCaptureProfiles(t *testing.T) {
	c, err := redact.NewCapture(redact.CaptureConfig{
		Redaction: redact.Config{FingerprintSecret: bytes.Repeat([]byte{1}, 32)},
		Tenants:   map[string]redact.Profile{"min": redact.Minimal, "for": redact.Forensic},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tenant    string
		store     bool
		cardKept  bool
		profAttr  string
		findings  int
		emailKept bool
	}{
		{"std", true, false, "", 5, true},
		{"min", false, false, `"minimal"`, 5, true},
		{"for", true, true, `"forensic"`, 5, true},
	} {
		t.Run(tc.tenant, func(t *testing.T) {
			r := captureRecord(tc.tenant)
			store, err := c.Apply(r)
			if err != nil {
				t.Fatal(err)
			}
			if store != tc.store {
				t.Errorf("store = %v, want %v", store, tc.store)
			}
			all := string(r.Content["prompt"]) + string(r.Content["tool.arguments"]) + string(r.Attributes["note"])
			for _, secret := range []string{"ghp_a1B2", "sk-proj-Zx9"} {
				if strings.Contains(all, secret) {
					t.Errorf("secret %s left in %s", secret, all)
				}
			}
			if got := strings.Contains(all, "4111 1111 1111 1111"); got != tc.cardKept {
				t.Errorf("card kept = %v, want %v: %s", got, tc.cardKept, all)
			}
			if string(r.Attributes["capture.profile"]) != tc.profAttr {
				t.Errorf("capture.profile = %s, want %s", r.Attributes["capture.profile"], tc.profAttr)
			}
			var fs []redact.Finding
			if err := json.Unmarshal(r.Attributes["redaction.findings"], &fs); err != nil {
				t.Fatalf("redaction.findings %s: %v", r.Attributes["redaction.findings"], err)
			}
			if len(fs) == 0 || strings.Contains(string(r.Attributes["redaction.findings"]), "ghp_") {
				t.Errorf("findings %s", r.Attributes["redaction.findings"])
			}
			if _, err := infertrail.Canonicalize(r.Attributes["redaction.findings"]); err != nil {
				t.Error(err)
			}
			if err := r.Validate(infertrail.Limits{}); err != nil && !errors.Is(err, infertrail.ErrInvalid) {
				t.Error(err)
			}
		})
	}
	if _, err := redact.NewCapture(redact.CaptureConfig{Profile: "paranoid"}); !errors.Is(err, infertrail.ErrInvalid) {
		t.Errorf("unknown profile: %v", err)
	}
}

// TestScanCache redacts the same strings again, under fields with other
// actions: remembered scan results must give the same answers as a scan.
func TestScanCache(t *testing.T) {
	r, err := redact.New(redact.Config{
		FingerprintSecret: bytes.Repeat([]byte{1}, 32),
		Fields:            map[string]map[string]redact.Action{"keep.me": {"secret": redact.Keep, "pii": redact.Keep}},
	})
	if err != nil {
		t.Fatal(err)
	}
	v := []byte(`["a long enough message with card 4111 1111 1111 1111 and token ghp_` + strings.Repeat("a1B2", 9) + `","a clean and long enough message, nothing to see here at all"]`)
	first, f1, err := r.Redact("prompt", v)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		again, f2, err := r.Redact("prompt", v)
		if err != nil || !bytes.Equal(again, first) || len(f2) != len(f1) {
			t.Fatalf("second redaction %s %v, want %s %v", again, f2, first, f1)
		}
		kept, fk, err := r.Redact("keep.me", v)
		if err != nil || !bytes.Equal(kept, v) || len(fk) != len(f1) {
			t.Fatalf("keep field: %s %v, want the input and %d findings", kept, fk, len(f1))
		}
	}
	if bytes.Equal(first, v) || bytes.Contains(first, []byte("ghp_")) {
		t.Errorf("not redacted: %s", first)
	}
}

// TestCaptureRouteProfile honours the profile a capture path asks for.
func TestCaptureRouteProfile(t *testing.T) {
	c, err := redact.NewCapture(redact.CaptureConfig{Redaction: redact.Config{FingerprintSecret: bytes.Repeat([]byte{1}, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	r := captureRecord("std")
	r.Attributes[redact.ProfileAttribute] = []byte(`"minimal"`)
	if store, err := c.Apply(r); err != nil || store {
		t.Errorf("minimal route: store %v, %v", store, err)
	}
	r = captureRecord("std")
	r.Attributes[redact.ProfileAttribute] = []byte(`"lavish"`)
	if _, err := c.Apply(r); !errors.Is(err, infertrail.ErrInvalid) {
		t.Errorf("unknown route profile: %v", err)
	}
}

// TestCaptureFindingsOrder: the findings attribute lists attributes by
// name, then the metadata strings, then content fields by name, whatever
// the order the record's maps are walked in: it is part of the leaf.
func TestCaptureFindingsOrder(t *testing.T) {
	c, err := redact.NewCapture(redact.CaptureConfig{Redaction: redact.Config{FingerprintSecret: bytes.Repeat([]byte{1}, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	secret := func(i int) json.RawMessage {
		return []byte(`"token ghp_` + strings.Repeat(string(rune('a'+i))+"1B2", 9) + `"`)
	}
	var first []byte
	for range 20 {
		r := captureRecord("std")
		r.SessionID = "sess ghp_" + strings.Repeat("s1B2", 9)
		for i, k := range []string{"zeta", "alpha", "mu"} {
			r.Attributes[k] = secret(i)
			r.Content["c."+k] = secret(i + 3)
		}
		if _, err := c.Apply(r); err != nil {
			t.Fatal(err)
		}
		var fs []redact.Finding
		if err := json.Unmarshal(r.Attributes[redact.FindingsAttribute], &fs); err != nil {
			t.Fatal(err)
		}
		var fields []string
		for _, f := range fs {
			if len(fields) == 0 || fields[len(fields)-1] != f.Field {
				fields = append(fields, f.Field)
			}
		}
		want := "attributes.alpha attributes.mu attributes.note attributes.zeta session_id c.alpha c.mu c.zeta prompt tool.arguments"
		if got := strings.Join(fields, " "); got != want {
			t.Fatalf("findings by field:\n%s\nwant\n%s", got, want)
		}
		if first == nil {
			first = r.Attributes[redact.FindingsAttribute]
		} else if !bytes.Equal(first, r.Attributes[redact.FindingsAttribute]) {
			t.Fatalf("findings differ from one run to the next:\n%s\n%s", first, r.Attributes[redact.FindingsAttribute])
		}
	}
}
