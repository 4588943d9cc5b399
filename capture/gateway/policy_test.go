package gateway_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/policy"
)

const modelPolicy = `package infertrail.inference.request

import rego.v1

default decision := {"result": "allow"}

decision := {"result": "deny", "reasons": [sprintf("model %s is not approved", [input.inference.model])]} if {
	input.inference.model == "m-bad"
}
`

// TestPolicy: with a policy, a request is decided before it is forwarded;
// a denied one gets the provider's error shape and never reaches the
// upstream; every decision is a policy_decision record that governs the
// request record.
func TestPolicy(t *testing.T) {
	up := newUpstream(t, okUpstream)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "models.rego"), []byte(modelPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	rig := newRig(t, up, func(c *gateway.Config) {
		e, err := policy.New(t.Context(), policy.Config{Dir: dir, Recorder: c.Recorder.(*ledger.Log)})
		if err != nil {
			t.Fatal(err)
		}
		c.Policy = e
	})
	resp := rig.post(t, t.Context(), `{"model":"m"}`, nil)
	readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("allowed call: %d", resp.StatusCode)
	}
	resp = rig.post(t, t.Context(), `{"model":"m-bad"}`, nil)
	b := readAll(t, resp)
	if resp.StatusCode != 403 || !strings.Contains(string(b), "model m-bad is not approved") || !strings.Contains(string(b), `"error"`) {
		t.Fatalf("denied call: %d %s", resp.StatusCode, b)
	}
	if up.count() != 1 {
		t.Fatalf("%d upstream calls, want 1: the denied call was forwarded", up.count())
	}
	recs := rig.records(t)
	byID := map[infertrail.UUID]*infertrail.Record{}
	for _, r := range recs {
		byID[r.ID] = r.Record
	}
	var allow, deny int
	for _, r := range recs {
		if r.Kind != infertrail.KindPolicyDecision {
			continue
		}
		if len(r.Links) != 1 || r.Links[0].Rel != "governs" || byID[r.Links[0].ID] == nil {
			t.Fatalf("decision links %v", r.Links)
		}
		governed := byID[r.Links[0].ID]
		if governed.Attributes["infertrail.phase"] == nil || r.Attr("policy.id") != "infertrail.inference.request" ||
			r.Attr("policy.point") != "inference.request" || !strings.HasPrefix(r.Attr("policy.bundle_digest").(string), "sha256:") {
			t.Errorf("decision %v governs %v", r.Attributes, governed.Attributes)
		}
		switch r.Attr("policy.result") {
		case "allow":
			allow++
		case "deny":
			deny++
			if !strings.Contains(string(r.Content["policy.reasons"]), "not approved") || governed.Attributes["infertrail.refused"] == nil {
				t.Errorf("deny decision %v, governed %v", r.Content, governed.Attributes)
			}
		}
	}
	if allow != 1 || deny != 1 {
		t.Fatalf("%d allow and %d deny decisions recorded", allow, deny)
	}
}

const responseModelPolicy = `package infertrail.inference.response

import rego.v1

default decision := {"result": "allow"}

decision := {"result": "deny", "reasons": ["echo-answered is not approved"]} if input.response.model == "echo-answered"
`

// TestResponsePolicyFailClosed: in fail-closed mode, a response held for
// its policy is released only once its record and the decision are
// durable, and the record header names both; a withheld one answers 403
// and records the decision that withheld it.
func TestResponsePolicyFailClosed(t *testing.T) {
	up := newUpstream(t, okUpstream)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "response.rego"), []byte(responseModelPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	rig := newRig(t, up, func(c *gateway.Config) {
		e, err := policy.New(t.Context(), policy.Config{Dir: dir, Recorder: c.Recorder.(*ledger.Log)})
		if err != nil {
			t.Fatal(err)
		}
		c.Policy, c.Durability = e, gateway.FailClosed
	})
	resp := rig.post(t, t.Context(), `{"model":"m"}`, nil)
	b := readAll(t, resp)
	if resp.StatusCode != 403 || !strings.Contains(string(b), "echo-answered is not approved") || strings.Contains(string(b), "hello") {
		t.Fatalf("withheld response: %d %s", resp.StatusCode, b)
	}
	if h := resp.Header.Get(gateway.HeaderRecord); h != "1, 2" {
		t.Errorf("%s = %q, want the request's and the response's seqs", gateway.HeaderRecord, h)
	}
	recs := rig.records(t)
	if len(recs) != 4 { // the policy load, request, response, decision
		t.Fatalf("%d records", len(recs))
	}
	if recs[2].Attr("infertrail.withheld") == nil || recs[3].Attr("policy.result") != "deny" || recs[3].Links[0].ID != recs[2].ID {
		t.Fatalf("records %v / %v %v", recs[2].Attributes, recs[3].Attributes, recs[3].Links)
	}
}
