package redact_test

import (
	"fmt"
	"log"
	"strings"

	"github.com/infertrail/infertrail/redact"
)

func ExampleRedactor_Redact() {
	r, err := redact.New(redact.Config{
		FingerprintSecret: []byte("an example secret of at least 32 bytes!!"),
		Actions:           map[string]redact.Action{"email": redact.Mask},
	})
	if err != nil {
		log.Fatal(err)
	}
	// A content value, as canonical JSON.
	value := []byte(`[{"parts":[{"content":"Send the report to jane.doe@example-bank.com; my key is ghp_eF7Cqurdb5w2HYItbI9C9wXsPYeZW2qgwPzE","type":"text"}],"role":"user"}]`)
	out, findings, err := r.Redact("gen_ai.input.messages", value)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(out))
	for _, f := range findings {
		fmt.Println(f.Detector, f.Class, f.Count, f.Action)
	}
	// Output:
	// [{"parts":[{"content":"Send the report to [redacted:email]; my key is [github-token:hmac-sha256:314b901952d0a21c39403471c9fd57e4742e390f4a692ef571788673bbfe9255]","type":"text"}],"role":"user"}]
	// email pii 1 mask
	// github-token secret 1 fingerprint
}

func ExampleRedactor_String() {
	r, err := redact.New(redact.Config{Actions: map[string]redact.Action{"secret": redact.Mask}})
	if err != nil {
		log.Fatal(err)
	}
	s, findings := r.String("http.request.header.authorization", "Basic c3ZjLXJlcG9ydGluZzpRejctdmF1bHQtUHch")
	fmt.Println(s, findings)
	// Output:
	// Basic [redacted:basic-auth] [{http.request.header.authorization basic-auth secret 1 mask}]
}

func ExampleNewFingerprinter() {
	fp, err := redact.NewFingerprinter([]byte("an example secret of at least 32 bytes!!"))
	if err != nil {
		log.Fatal(err)
	}
	a, b := fp.Of("sk-live-key"), fp.Of("sk-live-key")
	fmt.Println(a == b, strings.HasPrefix(a, "hmac-sha256:"), len(a))
	// Output:
	// true true 76
}

func ExampleLoadRules() {
	extra, err := redact.LoadRules(strings.NewReader(`
rules:
  - id: employee-id
    class: pii
    description: ACME employee number
    regex: '\bEMP-[0-9]{6}\b'
    keywords: [emp-]
    action: mask
    priority: 60
`))
	if err != nil {
		log.Fatal(err)
	}
	r, err := redact.New(redact.Config{
		Rules:   redact.DefaultRules().Merge(extra),
		Actions: map[string]redact.Action{"secret": redact.Mask},
	})
	if err != nil {
		log.Fatal(err)
	}
	s, _ := r.String("tool.arguments", "escalate EMP-004211 to ops@acme.example")
	fmt.Println(s)
	// Output:
	// escalate [redacted:employee-id] to ops@acme.example
}
