package keys_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/infertrail/infertrail/keys"
)

func TestParseWrapped(t *testing.T) {
	long := strings.Repeat("k", 255)
	tests := []struct {
		name     string
		in       []byte
		wantID   string
		wantBody string
		wantErr  string
	}{
		{"file KEK", append([]byte{1, 12}, "kek-0a1b2c3dbody"...), "kek-0a1b2c3d", "body", ""},
		{"KMS ARN", append([]byte{1, 35}, "arn:aws:kms:eu-west-1:1:alias/trailx"...), "arn:aws:kms:eu-west-1:1:alias/trail", "x", ""},
		{"longest id", append(append([]byte{1, 255}, long...), 0), long, "\x00", ""},
		{"empty", nil, "", "", "too short"},
		{"version only", []byte{1}, "", "", "too short"},
		{"version 0", []byte{0, 1, 'k', 'x'}, "", "", "version 0"},
		{"version 2", []byte{2, 1, 'k', 'x'}, "", "", "version 2"},
		{"empty id", []byte{1, 0, 'x'}, "", "", "empty KEK id"},
		{"id cut short", []byte{1, 5, 'k', 'e'}, "", "", "cut short"},
		{"space in id", []byte{1, 3, 'k', ' ', 'k', 'x'}, "", "", "offset 1"},
		{"newline in id", []byte{1, 2, 'k', '\n', 'x'}, "", "", "offset 1"},
		{"no body", []byte{1, 1, 'k'}, "", "", "no body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, body, err := keys.ParseWrapped(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, keys.ErrUnwrap) {
					t.Fatalf("ParseWrapped err = %v, want one with %q wrapping ErrUnwrap", err, tt.wantErr)
				}
				return
			}
			if err != nil || id != tt.wantID || string(body) != tt.wantBody {
				t.Fatalf("ParseWrapped = %q, %q, %v; want %q, %q", id, body, err, tt.wantID, tt.wantBody)
			}
			if by, err := keys.WrappedBy(tt.in); by != tt.wantID || err != nil {
				t.Fatalf("WrappedBy = %q, %v", by, err)
			}
		})
	}
}

func TestAppendHeader(t *testing.T) {
	got, err := keys.AppendHeader([]byte("x"), "kek-01")
	if err != nil || string(got) != "x\x01\x06kek-01" {
		t.Fatalf("AppendHeader = %q, %v", got, err)
	}
	for _, id := range []string{"", "a b", "é", strings.Repeat("k", 256)} {
		if _, err := keys.AppendHeader(nil, id); err == nil {
			t.Errorf("AppendHeader(%q) accepted a bad id", id)
		}
	}
}

// FuzzWrappedBy checks that parsing never panics and that a wrapped key
// that parses is exactly its header and body (no other bytes mean the same).
func FuzzWrappedBy(f *testing.F) {
	f.Add(append([]byte{1, 12}, "kek-0a1b2c3dbody"...))
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 255, 'k'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		id, body, err := keys.ParseWrapped(in)
		by, err2 := keys.WrappedBy(in)
		if (err == nil) != (err2 == nil) || by != id {
			t.Fatalf("WrappedBy = %q, %v; ParseWrapped = %q, %v", by, err2, id, err)
		}
		if err != nil {
			if !errors.Is(err, keys.ErrUnwrap) {
				t.Fatalf("err = %v, want ErrUnwrap", err)
			}
			return
		}
		again, err := keys.AppendHeader(nil, id)
		if err != nil {
			t.Fatalf("AppendHeader(%q) refused a parsed id: %v", id, err)
		}
		if again = append(again, body...); !bytes.Equal(again, in) {
			t.Fatalf("re-encoded %q as %q", in, again)
		}
	})
}
