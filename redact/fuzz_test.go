package redact_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/redact"
)

// FuzzRedact checks, for any canonical JSON value, that Redact's output is
// canonical JSON, that findings never carry text of the input beyond their
// fixed vocabulary, and that redacting the output again masks and
// fingerprints nothing new.
func FuzzRedact(f *testing.F) {
	for _, c := range loadCorpus(f) {
		f.Add([]byte(c.value(f)))
		if c.Text != nil {
			f.Add([]byte(*c.Text))
		}
	}
	f.Add([]byte(`{"password":"x","ghp_eF7Cqurdb5w2HYItbI9C9wXsPYeZW2qgwPzE":1,"[redacted:github-token]":2}`))
	f.Add([]byte(`["a@b.example","a@b.example",{"c@d.example":1,"e@f.example":2}]`))
	defaults := newRedactor(f, redact.Config{FingerprintSecret: testSecret})
	masking := maskAll(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := infertrail.Canonicalize(in)
		if err != nil {
			// Not JSON: treat the bytes as the text of a message, when they
			// can be one.
			if v, err = infertrail.Canonicalize(chatJSON(string(in))); err != nil {
				return
			}
		}
		for _, r := range []*redact.Redactor{defaults, masking} {
			out, fs, err := r.Redact("gen_ai.input.messages", v)
			if err != nil {
				t.Fatalf("Redact(%s): %v", v, err)
			}
			if out == nil {
				t.Fatalf("Redact(%s) dropped the value with no drop action: %v", v, fs)
			}
			if !json.Valid(out) {
				t.Fatalf("Redact(%s) = %s, not JSON", v, out)
			}
			again, err := infertrail.Canonicalize(out)
			if err != nil || !bytes.Equal(again, out) {
				t.Fatalf("Redact(%s) = %s, not canonical (%v)", v, out, err)
			}
			if len(fs) == 0 && !bytes.Equal(out, v) {
				t.Fatalf("Redact(%s) changed the value with no findings: %s", v, out)
			}
			for _, fd := range fs {
				if fd.Count < 1 || fd.Field != "gen_ai.input.messages" || (fd.Class != redact.ClassSecret && fd.Class != redact.ClassPII) {
					t.Fatalf("bad finding %+v", fd)
				}
			}
			out2, fs2, err := r.Redact("gen_ai.input.messages", out)
			if err != nil {
				t.Fatalf("second Redact(%s): %v", out, err)
			}
			for _, fd := range fs2 {
				if fd.Action != redact.Keep {
					t.Fatalf("not idempotent: %s\n→ %s\n→ %s\nnew finding %+v", v, out, out2, fd)
				}
			}
		}
	})
}
