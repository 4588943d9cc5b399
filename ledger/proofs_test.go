package ledger

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
)

// proofFixture is a log of 300 entries with a signed checkpoint.
func proofFixture(t *testing.T) (*memLog, *testSigner, Checkpoint) {
	t.Helper()
	l := newMemLog(t, 300)
	s := newTestSigner(t, "example.com/proofs")
	cp, err := SignCheckpoint(s.signer, s.origin, l.size(), l.root(t, l.size()))
	if err != nil {
		t.Fatal(err)
	}
	return l, s, cp
}

func TestFormatVerifyProof(t *testing.T) {
	l, s, cp := proofFixture(t)
	policy := torchwood.ThresholdPolicy(2, torchwood.OriginPolicy(s.origin), torchwood.SingleVerifierPolicy(s.verif))
	for _, index := range []int64{0, 1, 2, 97, 255, 256, 299} {
		for _, extra := range [][][]byte{nil, {[]byte("ctx")}, {{}}} {
			p, err := tlog.ProveRecord(cp.Size, index, l)
			if err != nil {
				t.Fatal(err)
			}
			text, err := FormatProof(index, p, cp, extra...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := VerifyProof(text, l.entries[index], s.origin, s.verif)
			if err != nil || got != index {
				t.Fatalf("VerifyProof(index %d) = %d, %v", index, got, err)
			}
			// An independent C2SP client accepts the same bytes...
			if err := torchwood.VerifyProof(policy, tlog.RecordHash(l.entries[index]), text); err != nil {
				t.Errorf("torchwood.VerifyProof(index %d): %v", index, err)
			}
			// ... and formats exactly the same bytes.
			var tw []byte
			if len(extra) == 0 {
				tw = torchwood.FormatProof(index, p, cp.Note)
			} else {
				tw = torchwood.FormatProofWithExtraData(index, extra[0], p, cp.Note)
			}
			if !bytes.Equal(tw, text) {
				t.Errorf("torchwood formats\n%s\nwe format\n%s", tw, text)
			}
			parsed, err := ParseProof(text)
			if err != nil {
				t.Fatal(err)
			}
			if len(extra) == 1 && !bytes.Equal(parsed.Extra, extra[0]) || len(extra) == 0 && parsed.Extra != nil {
				t.Errorf("extra = %q, want %q", parsed.Extra, extra)
			}
			if !bytes.Equal(parsed.Marshal(), text) {
				t.Error("Marshal(ParseProof(text)) != text")
			}
		}
	}
}

// TestProofSpecExample parses the example of C2SP tlog-proof (its signatures
// are elided in the spec, so only the syntax is checked).
func TestProofSpecExample(t *testing.T) {
	const example = `c2sp.org/tlog-proof@v1
extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ
index 73894
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=
B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=
EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=
RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=
AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=

example.com/fancylog
109482
sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=

— example.com/fancylog hI2DJw==
`
	p, err := ParseProof([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	if p.Index != 73894 || len(p.Path) != 5 || !strings.HasPrefix(string(p.Extra), "age-v1.2.1-darwin-arm64.tar.gz") ||
		!strings.HasPrefix(string(p.Checkpoint), "example.com/fancylog\n109482\n") {
		t.Errorf("parsed %+v", p)
	}
	if string(p.Marshal()) != example {
		t.Error("Marshal does not give back the example")
	}
}

func TestVerifyProofRejects(t *testing.T) {
	l, s, cp := proofFixture(t)
	const index = 42
	p, err := tlog.ProveRecord(cp.Size, index, l)
	if err != nil {
		t.Fatal(err)
	}
	text, err := FormatProof(index, p, cp)
	if err != nil {
		t.Fatal(err)
	}
	other := newTestSigner(t, s.origin)
	tests := []struct {
		name      string
		text      string
		leaf      []byte
		wantIndex int64 // index in the *VerificationError, or -2 for another error
	}{
		{"wrong leaf", string(text), []byte("not the entry"), index},
		{"other index", strings.Replace(string(text), "index 42\n", "index 43\n", 1), l.entries[index], 43},
		{"index beyond tree", strings.Replace(string(text), "index 42\n", "index 300\n", 1), l.entries[index], 300},
		{"changed proof hash", strings.Replace(string(text), p[0].String(), p[1].String(), 1), l.entries[index], index},
		{"dropped proof hash", strings.Replace(string(text), p[0].String()+"\n", "", 1), l.entries[index], index},
		{"changed checkpoint", strings.Replace(string(text), "\n300\n", "\n301\n", 1), l.entries[index], -2},
		{"other signer", strings.Replace(string(text), string(cp.Note), string(must(SignCheckpoint(other.signer, s.origin, cp.Size, cp.Root)).Note), 1), l.entries[index], -2},
		{"no header", strings.TrimPrefix(string(text), ProofHeader+"\n"), l.entries[index], -2},
		{"v2 header", strings.Replace(string(text), "@v1", "@v2", 1), l.entries[index], -2},
		{"leading zero index", strings.Replace(string(text), "index 42\n", "index 042\n", 1), l.entries[index], -2},
		{"bad extra", strings.Replace(string(text), "index", "extra !!\nindex", 1), l.entries[index], -2},
		{"no blank line", strings.Replace(string(text), "\n\n"+string(cp.Note[:10]), "\n"+string(cp.Note[:10]), 1), l.entries[index], -2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := VerifyProof([]byte(tt.text), tt.leaf, s.origin, s.verif)
			if err == nil {
				t.Fatalf("VerifyProof accepted it (index %d)", got)
			}
			var ve *VerificationError
			switch {
			case tt.wantIndex == -2 && errors.As(err, &ve):
				t.Errorf("error %v is a VerificationError, want a parse or signature error", err)
			case tt.wantIndex >= 0 && !errors.As(err, &ve):
				t.Errorf("error %v is not a VerificationError", err)
			case tt.wantIndex >= 0 && ve.Index != tt.wantIndex:
				t.Errorf("error index %d, want %d (%v)", ve.Index, tt.wantIndex, err)
			}
		})
	}
	t.Run("wrong origin", func(t *testing.T) {
		if _, err := VerifyProof(text, l.entries[index], "example.com/other", s.verif); err == nil {
			t.Error("VerifyProof accepted another origin")
		}
	})
}

func TestFormatProofInvalid(t *testing.T) {
	_, _, cp := proofFixture(t)
	if _, err := FormatProof(-1, nil, cp); err == nil {
		t.Error("negative index accepted")
	}
	if _, err := FormatProof(cp.Size, nil, cp); err == nil {
		t.Error("index beyond the tree accepted")
	}
	if _, err := FormatProof(0, nil, Checkpoint{Size: 1}); err == nil {
		t.Error("checkpoint without note accepted")
	}
	if _, err := FormatProof(0, nil, cp, []byte("a"), []byte("b")); err == nil {
		t.Error("two extras accepted")
	}
}

func TestParseProofInvalid(t *testing.T) {
	h := tlog.RecordHash(nil).String()
	for name, text := range map[string]string{
		"empty":           "",
		"header only":     ProofHeader + "\n",
		"no index":        ProofHeader + "\n" + h + "\n\ncp\n",
		"negative index":  ProofHeader + "\nindex -1\n\ncp\n",
		"signed index":    ProofHeader + "\nindex +1\n\ncp\n",
		"index overflow":  ProofHeader + "\nindex 9223372036854775808\n\ncp\n",
		"short hash":      ProofHeader + "\nindex 1\nAAAA\n\ncp\n",
		"unpadded hash":   ProofHeader + "\nindex 1\n" + strings.TrimSuffix(h, "=") + "\n\ncp\n",
		"no checkpoint":   ProofHeader + "\nindex 1\n" + h + "\n\n",
		"no blank":        ProofHeader + "\nindex 1\n" + h + "\n",
		"extra after idx": ProofHeader + "\nindex 1\nextra AA==\n\ncp\n",
		"unpadded extra":  ProofHeader + "\nextra YQ\nindex 1\n\ncp\n",
		"two spaces":      ProofHeader + "\nindex  1\n\ncp\n",
		"crlf":            ProofHeader + "\r\nindex 1\r\n\r\ncp\n",
		"too many hashes": ProofHeader + "\nindex 1\n" + strings.Repeat(h+"\n", 64) + "\ncp\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseProof([]byte(text)); err == nil || !errors.Is(err, infertrail.ErrInvalid) {
				t.Errorf("ParseProof error = %v, want a malformed tlog-proof error", err)
			}
		})
	}
}

// FuzzParseProof checks that every accepted proof is canonical: Marshal gives
// back the same bytes.
func FuzzParseProof(f *testing.F) {
	h := tlog.RecordHash(nil).String()
	f.Add([]byte(ProofHeader + "\nindex 0\n\ncp\n"))
	f.Add([]byte(ProofHeader + "\nextra YWJj\nindex 12\n" + h + "\n" + h + "\n\nexample.com/log\n1\n" + h + "\n\n— x AAAA\n"))
	f.Add([]byte(ProofHeader + "\nextra \nindex 7\n\ncp"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseProof(b)
		if err != nil {
			return
		}
		if !bytes.Equal(p.Marshal(), b) {
			t.Fatalf("Marshal(ParseProof(%q)) = %q", b, p.Marshal())
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
