package redact_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/redact"
)

const (
	fakeGitHub = "ghp_eF7Cqurdb5w2HYItbI9C9wXsPYeZW2qgwPzE"
	fakeEmail  = "jane.doe@example-bank.com"
	fakeCard   = "4248 5877 5897 4927"
)

// fingerprint computes a fingerprint independently of the package.
func fingerprint(secret []byte, v string) string {
	m := hmac.New(sha256.New, append([]byte("infertrail credential fingerprint\x00"), secret...))
	m.Write([]byte(v))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

func TestFingerprinter(t *testing.T) {
	f, err := redact.NewFingerprinter(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	// Known answers, computed with Python's hmac module.
	for _, kat := range []struct{ in, want string }{
		{"abc", "hmac-sha256:e48ec34ac4148cfb1c966847bf4f996f0e9da59172503a977c0faefa00ff59e2"},
		{fakeGitHub, "hmac-sha256:1ef2bb9473a14736c10429c68c6d2e2c9d8e6310d8bad096364ebe34e103b717"},
	} {
		if got := f.Of(kat.in); got != kat.want {
			t.Errorf("Of(%q) = %s, want %s", kat.in, got, kat.want)
		}
		if got := fingerprint(testSecret, kat.in); got != kat.want {
			t.Errorf("reference fingerprint(%q) = %s, want %s", kat.in, got, kat.want)
		}
	}
	if _, err := redact.NewFingerprinter(make([]byte, 31)); !errors.Is(err, infertrail.ErrInvalid) {
		t.Errorf("31-byte secret: err = %v, want ErrInvalid", err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if got := f.Of("abc"); got != "hmac-sha256:e48ec34ac4148cfb1c966847bf4f996f0e9da59172503a977c0faefa00ff59e2" {
					t.Errorf("concurrent Of = %s", got)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestActions(t *testing.T) {
	in := "token " + fakeGitHub + " mail " + fakeEmail
	for _, tc := range []struct {
		name    string
		actions map[string]redact.Action
		want    string // with the content of the message; "" means dropped
		acts    map[string]redact.Action
	}{
		{"defaults", nil,
			"token [github-token:" + fingerprint(testSecret, fakeGitHub) + "] mail " + fakeEmail,
			map[string]redact.Action{"github-token": redact.Fingerprint, "email": redact.Keep}},
		{"keep", map[string]redact.Action{"github-token": redact.Keep},
			in,
			map[string]redact.Action{"github-token": redact.Keep, "email": redact.Keep}},
		{"mask by id", map[string]redact.Action{"github-token": redact.Mask},
			"token [redacted:github-token] mail " + fakeEmail,
			map[string]redact.Action{"github-token": redact.Mask, "email": redact.Keep}},
		{"mask pii by class", map[string]redact.Action{"pii": redact.Mask},
			"token [github-token:" + fingerprint(testSecret, fakeGitHub) + "] mail [redacted:email]",
			map[string]redact.Action{"github-token": redact.Fingerprint, "email": redact.Mask}},
		{"id wins over class", map[string]redact.Action{"secret": redact.Mask, "github-token": redact.Keep, "pii": redact.Fingerprint},
			"token " + fakeGitHub + " mail [email:" + fingerprint(testSecret, fakeEmail) + "]",
			map[string]redact.Action{"github-token": redact.Keep, "email": redact.Fingerprint}},
		{"drop", map[string]redact.Action{"email": redact.Drop},
			"",
			map[string]redact.Action{"github-token": redact.Fingerprint, "email": redact.Drop}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRedactor(t, redact.Config{FingerprintSecret: testSecret, Actions: tc.actions})
			v := chatJSON(in)
			out, fs, err := r.Redact("gen_ai.input.messages", v)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if out != nil {
					t.Errorf("out = %s, want nil (dropped)", out)
				}
			} else if want := chatJSON(tc.want); !bytes.Equal(out, want) {
				t.Errorf("out\n got %s\nwant %s", out, want)
			}
			if len(fs) != len(tc.acts) {
				t.Fatalf("findings %+v, want %v", fs, tc.acts)
			}
			for _, f := range fs {
				if f.Action != tc.acts[f.Detector] || f.Count != 1 || f.Field != "gen_ai.input.messages" {
					t.Errorf("finding %+v, want action %s", f, tc.acts[f.Detector])
				}
			}
			s, sfs := r.String("gen_ai.input.messages", in)
			if s != tc.want || len(sfs) != len(fs) {
				t.Errorf("String = %q, %v; want %q", s, sfs, tc.want)
			}
		})
	}
}

func TestFieldOverrides(t *testing.T) {
	r := newRedactor(t, redact.Config{
		FingerprintSecret: testSecret,
		Actions:           map[string]redact.Action{"card": redact.Keep},
		Fields: map[string]map[string]redact.Action{
			"tool.arguments":         {"pii": redact.Mask},
			"gen_ai.output.messages": {"github-token": redact.Drop},
			"gen_ai.input.messages":  {"secret": redact.Keep, "card": redact.Mask},
		},
	})
	v := chatJSON("card " + fakeCard + " token " + fakeGitHub + " mail " + fakeEmail)
	for _, tc := range []struct {
		field string
		acts  map[string]redact.Action
	}{
		// no override: the global actions
		{"tool.result", map[string]redact.Action{"card": redact.Keep, "github-token": redact.Fingerprint, "email": redact.Keep}},
		// a class in the field wins over an id in Actions
		{"tool.arguments", map[string]redact.Action{"card": redact.Mask, "github-token": redact.Fingerprint, "email": redact.Mask}},
		{"gen_ai.output.messages", map[string]redact.Action{"card": redact.Keep, "github-token": redact.Drop, "email": redact.Keep}},
		{"gen_ai.input.messages", map[string]redact.Action{"card": redact.Mask, "github-token": redact.Keep, "email": redact.Keep}},
	} {
		t.Run(tc.field, func(t *testing.T) {
			out, fs, err := r.Redact(tc.field, v)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]redact.Action{}
			for _, f := range fs {
				got[f.Detector] = f.Action
			}
			if len(got) != len(tc.acts) {
				t.Fatalf("findings %+v, want %v", fs, tc.acts)
			}
			for id, a := range tc.acts {
				if got[id] != a {
					t.Errorf("%s: action %s, want %s", id, got[id], a)
				}
			}
			if (out == nil) != (tc.acts["github-token"] == redact.Drop) {
				t.Errorf("out = %s", out)
			}
			if tc.acts["card"] == redact.Mask && bytes.Contains(out, []byte(fakeCard)) {
				t.Errorf("card not masked: %s", out)
			}
		})
	}
}

func TestUnchangedValueIsReturnedAsIs(t *testing.T) {
	r := newRedactor(t, redact.Config{FingerprintSecret: testSecret})
	for _, v := range [][]byte{
		benchChat(t, 1<<10, false),
		chatJSON("write to " + fakeEmail), // Keep: reported, not changed
	} {
		out, _, err := r.Redact("gen_ai.input.messages", v)
		if err != nil {
			t.Fatal(err)
		}
		if &out[0] != &v[0] || len(out) != len(v) {
			t.Errorf("Redact returned a copy of an unchanged value")
		}
	}
	v := benchChat(t, 1<<10, false)
	if n := testing.AllocsPerRun(100, func() { _, _, _ = r.Redact("gen_ai.input.messages", v) }); n != 0 {
		t.Errorf("Redact of a value without findings allocates %v times", n)
	}
}

func TestRedactScalarsAndShapes(t *testing.T) {
	r := maskAll(t)
	for _, tc := range []struct{ in, want string }{
		{`"` + fakeGitHub + `"`, `"[redacted:github-token]"`},
		{`123`, `123`},
		{`null`, `null`},
		{`[]`, `[]`},
		{`{}`, `{}`},
		{`[true,false,null,-1.5e+300,"x"]`, `[true,false,null,-1.5e+300,"x"]`},
		{`{"a":{"b":[{"c":"` + fakeEmail + `"}]}}`, `{"a":{"b":[{"c":"[redacted:email]"}]}}`},
		// a control character and a quote around the secret survive re-encoding
		{`"\u0001\"` + fakeGitHub + `\"\n"`, `"\u0001\"[redacted:github-token]\"\n"`},
	} {
		out, _, err := r.Redact("f", []byte(tc.in))
		if err != nil {
			t.Errorf("Redact(%s): %v", tc.in, err)
			continue
		}
		if string(out) != tc.want {
			t.Errorf("Redact(%s) = %s, want %s", tc.in, out, tc.want)
		}
	}
}

func TestRedactMalformed(t *testing.T) {
	r := maskAll(t)
	for _, in := range []string{``, `{`, `[1,]`, `{"a"}`, `{"a":1,}`, `"abc`, "\"a\x01\"", `"\x"`, `"\ud800"`, `tru`, `[1] 2`, "\"\xff\"",
		strings.Repeat("[", 200) + strings.Repeat("]", 200)} {
		out, fs, err := r.Redact("tool.arguments", []byte(in))
		if !errors.Is(err, infertrail.ErrInvalid) {
			t.Errorf("Redact(%q) = %q, %v, %v; want ErrInvalid", in, out, fs, err)
			continue
		}
		if !strings.Contains(err.Error(), "tool.arguments") {
			t.Errorf("error %q does not name the field", err)
		}
	}
}

func TestHeader(t *testing.T) {
	r := maskAll(t)
	for _, tc := range []struct{ name, value, want, detector string }{
		{"X-Api-Key", "a8Kd93jfLq02mZx7", "[redacted:secret-assignment]", "secret-assignment"},
		{"Authorization", "Bearer a5LW6UgxtqkAfrp.WagdBcnBlqybmm.GpBzIwu1F", "Bearer [redacted:bearer-token]", "bearer-token"},
		{"Authorization", "Basic c3ZjLXJlcG9ydGluZzpRejctdmF1bHQtUHch", "Basic [redacted:basic-auth]", "basic-auth"},
		{"X-Password", "hunter2", "[redacted:password-assignment]", "password-assignment"},
		{"User-Agent", "curl/8.5.0", "curl/8.5.0", ""},
		{"X-Request-Id", "0193a5b0-7c1e-7000-8000-000000000001", "0193a5b0-7c1e-7000-8000-000000000001", ""},
	} {
		got, fs := r.Header("http.request.headers", tc.name, tc.value)
		if got != tc.want {
			t.Errorf("Header(%s: %s) = %q, want %q", tc.name, tc.value, got, tc.want)
		}
		if tc.detector == "" && len(fs) != 0 || tc.detector != "" && (len(fs) != 1 || fs[0].Detector != tc.detector) {
			t.Errorf("Header(%s: %s) findings %+v, want %s", tc.name, tc.value, fs, tc.detector)
		}
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  redact.Config
		want string // in the error
	}{
		{"no secret for default fingerprints", redact.Config{}, "fingerprint secret"},
		{"short secret", redact.Config{FingerprintSecret: make([]byte, 16)}, "16"},
		{"short secret though unused", redact.Config{FingerprintSecret: make([]byte, 16), Actions: map[string]redact.Action{"secret": redact.Mask}}, "want at least 32"},
		{"field needs a secret", redact.Config{Actions: map[string]redact.Action{"secret": redact.Mask},
			Fields: map[string]map[string]redact.Action{"tool.result": {"jwt": redact.Fingerprint}}}, "jwt in field tool.result"},
		{"unknown disabled id", redact.Config{FingerprintSecret: testSecret, Disable: []string{"aws-key"}}, `"aws-key"`},
		{"unknown action key", redact.Config{FingerprintSecret: testSecret, Actions: map[string]redact.Action{"secrets": redact.Mask}}, `unknown detector or class "secrets"`},
		{"unknown action", redact.Config{FingerprintSecret: testSecret, Actions: map[string]redact.Action{"email": "hide"}}, `unknown action "hide"`},
		{"unknown field key", redact.Config{FingerprintSecret: testSecret, Fields: map[string]map[string]redact.Action{"tool.arguments": {"ssn": redact.Mask}}}, `fields["tool.arguments"]: unknown detector or class "ssn"`},
		{"unknown field action", redact.Config{FingerprintSecret: testSecret, Fields: map[string]map[string]redact.Action{"tool.arguments": {"pii": "Mask"}}}, `unknown action "Mask"`},
		{"empty field", redact.Config{FingerprintSecret: testSecret, Fields: map[string]map[string]redact.Action{"": {"pii": redact.Mask}}}, "empty field name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := redact.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, infertrail.ErrInvalid) {
				t.Errorf("New: %v, want an ErrInvalid naming %s", err, tc.want)
			}
		})
	}
	// Everything off but Keep needs no secret.
	if _, err := redact.New(redact.Config{Actions: map[string]redact.Action{"secret": redact.Keep}}); err != nil {
		t.Errorf("New with no fingerprints: %v", err)
	}
}

func TestDisable(t *testing.T) {
	r := newRedactor(t, redact.Config{FingerprintSecret: testSecret, Disable: []string{"email", "github-token", "generic-secret"}})
	out, fs, err := r.Redact("f", chatJSON(fakeGitHub+" "+fakeEmail))
	if err != nil || len(fs) != 0 || !bytes.Contains(out, []byte(fakeGitHub)) {
		t.Errorf("Redact = %s, %v, %v; want nothing found", out, fs, err)
	}
	// A disabled detector's markers are still recognised: no generic-secret
	// finding inside an earlier marker.
	marked := "[github-token:" + fingerprint(testSecret, fakeGitHub) + "]"
	if _, fs := r.String("f", marked); len(fs) != 0 {
		t.Errorf("String(%s) = %v", marked, fs)
	}
}

func TestConcurrentRedact(t *testing.T) {
	r := newRedactor(t, redact.Config{FingerprintSecret: testSecret})
	cases := loadCorpus(t)
	want := make([][]byte, len(cases))
	for i, c := range cases {
		out, _, err := r.Redact(c.field(), c.value(t))
		if err != nil {
			t.Fatal(err)
		}
		want[i] = out
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for k := range len(cases) * 3 {
				i := (k + g*7) % len(cases)
				out, _, err := r.Redact(cases[i].field(), cases[i].value(t))
				if err != nil || !bytes.Equal(out, want[i]) {
					t.Errorf("%s: concurrent Redact = %s, %v; want %s", cases[i].Name, out, err, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestFindingsNeverHoldValues(t *testing.T) {
	r := newRedactor(t, redact.Config{FingerprintSecret: testSecret})
	_, fs, err := r.Redact("f", chatJSON(fakeGitHub+" "+fakeEmail+" "+fakeCard))
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 3 {
		t.Fatalf("findings %+v", fs)
	}
	for _, f := range fs {
		for _, s := range []string{f.Field, f.Detector, f.Class, string(f.Action)} {
			if strings.Contains(s, "ghp_") || strings.Contains(s, "@") || strings.Contains(s, "4248") {
				t.Errorf("finding %+v holds a value", f)
			}
		}
	}
}
