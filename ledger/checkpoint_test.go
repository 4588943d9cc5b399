package ledger

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
)

func TestCheckOrigin(t *testing.T) {
	tests := []struct {
		origin string
		ok     bool
	}{
		{"example.com/log", true},
		{"a", true},
		{"infertrail.example/tenant-1/2026", true},
		{strings.Repeat("a", MaxOriginLen), true},
		{"", false},
		{strings.Repeat("a", MaxOriginLen+1), false},
		{"example.com/my log", false},
		{"example.com/a+b", false},
		{"example.com/\tlog", false},
		{"example.com/log\n", false},
		{"exämple.com", false},
		{"example.com/\x7f", false},
	}
	for _, tt := range tests {
		t.Run(tt.origin, func(t *testing.T) {
			err := CheckOrigin(tt.origin)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckOrigin(%q) = %v, want ok=%v", tt.origin, err, tt.ok)
			}
			if err != nil && !errors.Is(err, infertrail.ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			_, _, err = GenerateKey(tt.origin)
			if (err == nil) != tt.ok {
				t.Errorf("GenerateKey(%q) = %v, want ok=%v", tt.origin, err, tt.ok)
			}
		})
	}
}

func TestGenerateKey(t *testing.T) {
	skey, vkey, err := GenerateKey("example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(skey, "PRIVATE+KEY+example.com/log+") || !strings.HasPrefix(vkey, "example.com/log+") {
		t.Errorf("keys %q / %q do not name the origin", skey, vkey)
	}
	skey2, _, err := GenerateKey("example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	if skey == skey2 {
		t.Error("two generated keys are equal")
	}
}

func TestSignParseCheckpoint(t *testing.T) {
	s := newTestSigner(t, "example.com/log")
	tests := []struct {
		name string
		size int64
		root tlog.Hash
	}{
		{"empty", 0, sha256.Sum256(nil)},
		{"one", 1, tlog.RecordHash([]byte("x"))},
		{"large", 1<<62 + 12345, tlog.RecordHash([]byte("y"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp, err := SignCheckpoint(s.signer, s.origin, tt.size, tt.root)
			if err != nil {
				t.Fatal(err)
			}
			body := CheckpointText(s.origin, tt.size, tt.root)
			if !bytes.HasPrefix(cp.Note, []byte(body+"\n— example.com/log ")) {
				t.Errorf("note %q does not start with body %q and the log's signature", cp.Note, body)
			}
			got, err := ParseCheckpoint(cp.Note, s.origin, s.verif)
			if err != nil {
				t.Fatal(err)
			}
			if got.Origin != s.origin || got.Size != tt.size || got.Root != tt.root || !bytes.Equal(got.Note, cp.Note) {
				t.Errorf("ParseCheckpoint = %+v, want %+v", got, cp)
			}
		})
	}
}

// TestCheckpointSpecExample parses the body of the example in C2SP
// tlog-checkpoint.
func TestCheckpointSpecExample(t *testing.T) {
	cp, err := parseCheckpointText("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
	if err != nil {
		t.Fatal(err)
	}
	if cp.Origin != "example.com/behind-the-sofa" || cp.Size != 20852163 || cp.Root.String() != "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=" {
		t.Errorf("parsed %+v", cp)
	}
}

func TestParseCheckpointBody(t *testing.T) {
	s := newTestSigner(t, "example.com/log")
	root := tlog.RecordHash([]byte("r")).String()
	tests := []struct {
		name    string
		body    string
		wantErr string // empty for success
	}{
		{"plain", "example.com/log\n5\n" + root + "\n", ""},
		{"zero", "example.com/log\n0\n" + root + "\n", ""},
		{"extensions", "example.com/log\n5\n" + root + "\next one\next two\n", ""},
		{"wrong origin", "example.com/other\n5\n" + root + "\n", "origin line"},
		{"two lines", "example.com/log\n5\n", "at least 3"},
		{"leading zero", "example.com/log\n05\n" + root + "\n", "leading zero"},
		{"plus sign", "example.com/log\n+5\n" + root + "\n", "size line"},
		{"minus sign", "example.com/log\n-5\n" + root + "\n", "size line"},
		{"empty size", "example.com/log\n\n" + root + "\n", "size line"},
		{"space", "example.com/log\n 5\n" + root + "\n", "size line"},
		{"overflow", "example.com/log\n9223372036854775808\n" + root + "\n", "out of range"},
		{"short root", "example.com/log\n5\n" + root[:40] + "=\n", "root line"},
		{"long root", "example.com/log\n5\n" + strings.Repeat("A", 44) + "AAAA\n", "root line"},
		{"url base64 root", "example.com/log\n5\n" + strings.NewReplacer("+", "-", "/", "_").Replace(strings.Repeat("+/", 21)) + "A=\n", "root line"},
		{"unpadded root", "example.com/log\n5\n" + strings.TrimSuffix(root, "=") + "\n", "root line"},
		{"non-canonical root", "example.com/log\n5\n" + root[:42] + "F=\n", "root line"},
		{"empty extension", "example.com/log\n5\n" + root + "\n\next\n", "extension line 1 is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := note.Sign(&note.Note{Text: tt.body}, s.signer)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseCheckpoint(msg, s.origin, s.verif)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseCheckpoint: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseCheckpoint error = %v, want one containing %q", err, tt.wantErr)
			}
			if !errors.Is(err, infertrail.ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
		})
	}
}

func TestParseCheckpointTampered(t *testing.T) {
	s := newTestSigner(t, "example.com/log")
	other := newTestSigner(t, "example.com/log")
	root := tlog.RecordHash([]byte("r"))
	cp, err := SignCheckpoint(s.signer, s.origin, 1234, root)
	if err != nil {
		t.Fatal(err)
	}
	text := string(cp.Note)
	body := CheckpointText(s.origin, 1234, root)
	sigLine := strings.TrimPrefix(text, body+"\n")
	otherRoot := tlog.RecordHash([]byte("s"))
	otherCP, err := SignCheckpoint(other.signer, s.origin, 1234, root)
	if err != nil {
		t.Fatal(err)
	}
	cosigner := newTestSigner(t, "witness.example")
	cosigned, err := note.Sign(&note.Note{Text: body}, s.signer, cosigner.signer)
	if err != nil {
		t.Fatal(err)
	}
	sigStart := len(body) + 1 + len("— example.com/log ")
	tests := []struct {
		name string
		text string
		ok   bool
	}{
		{"original", text, true},
		{"with a witness cosignature", string(cosigned), true},
		{"changed size", strings.Replace(text, "\n1234\n", "\n1235\n", 1), false},
		{"changed root", strings.Replace(text, root.String(), otherRoot.String(), 1), false},
		{"changed origin", strings.Replace(text, "example.com/log\n", "example.com/lof\n", 1), false},
		{"added extension", body + "ext\n\n" + sigLine, false},
		{"changed signature", string(tamper([]byte(text), sigStart+10)), false},
		{"other key", string(otherCP.Note), false},
		{"no signature", body + "\n", false},
		{"truncated", text[:len(text)-1], false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCheckpoint([]byte(tt.text), s.origin, s.verif)
			if tt.ok {
				if err != nil || got.Size != 1234 || got.Root != root {
					t.Fatalf("ParseCheckpoint = %+v, %v", got, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseCheckpoint accepted %q", tt.text)
			}
		})
	}
	t.Run("wrong expected origin", func(t *testing.T) {
		if _, err := ParseCheckpoint(cp.Note, "example.com/other", s.verif); err == nil || !strings.Contains(err.Error(), "origin") {
			t.Errorf("ParseCheckpoint with another origin = %v", err)
		}
	})
	t.Run("signature error type", func(t *testing.T) {
		_, err := ParseCheckpoint(otherCP.Note, s.origin, s.verif)
		var unverified *note.UnverifiedNoteError
		if !errors.As(err, &unverified) {
			t.Errorf("error %v is not an UnverifiedNoteError", err)
		}
	})
}

func TestSignCheckpointInvalid(t *testing.T) {
	s := newTestSigner(t, "example.com/log")
	if _, err := SignCheckpoint(s.signer, "bad origin", 1, tlog.Hash{}); err == nil {
		t.Error("SignCheckpoint accepted an origin with a space")
	}
	if _, err := SignCheckpoint(s.signer, s.origin, -1, tlog.Hash{}); err == nil {
		t.Error("SignCheckpoint accepted a negative size")
	}
}
