package keys_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/infertrail/infertrail/keys"
)

func newCipher(tb testing.TB) *keys.Cipher {
	tb.Helper()
	dek, err := keys.NewDataKey()
	if err != nil {
		tb.Fatal(err)
	}
	c, err := keys.NewCipher(dek)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestCipherRoundTrip(t *testing.T) {
	c := newCipher(t)
	tests := []struct {
		name       string
		dst, plain []byte
		aad        []byte
	}{
		{"empty", nil, nil, nil},
		{"empty plaintext with aad", nil, []byte{}, []byte("record-1")},
		{"one byte", nil, []byte("x"), nil},
		{"prompt", nil, []byte(`{"role":"user","content":"Pay invoice 7"}`), []byte("scope-42/record-7")},
		{"64 KiB", nil, bytes.Repeat([]byte("a"), 64<<10), []byte("aad")},
		{"appends to dst", []byte("prefix:"), []byte("content"), []byte("aad")},
		{"dst with spare capacity", make([]byte, 3, 100), []byte("content"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := bytes.Clone(tt.dst)
			sealed := c.Seal(tt.dst, tt.plain, tt.aad)
			if !bytes.Equal(sealed[:len(prefix)], prefix) {
				t.Fatalf("Seal changed dst's bytes")
			}
			sealed = sealed[len(prefix):]
			if got, want := len(sealed), len(tt.plain)+keys.Overhead; got != want {
				t.Fatalf("sealed is %d bytes, want %d", got, want)
			}
			if len(tt.plain) > 8 && bytes.Contains(sealed, tt.plain) {
				t.Fatalf("sealed holds the plaintext")
			}
			got, err := c.Open([]byte("out:"), sealed, tt.aad)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if want := append([]byte("out:"), tt.plain...); !bytes.Equal(got, want) {
				t.Fatalf("Open = %q, want %q", got, want)
			}
		})
	}
}

func TestCipherNonceIsFresh(t *testing.T) {
	c := newCipher(t)
	seen := map[string]bool{}
	for range 1000 {
		s := c.Seal(nil, []byte("same"), nil)
		nonce := string(s[:12])
		if seen[nonce] {
			t.Fatal("a nonce repeated")
		}
		seen[nonce] = true
	}
}

func TestCipherOpenRefuses(t *testing.T) {
	c := newCipher(t)
	plain, aad := []byte("the model asked to pay 1200 EUR"), []byte("record-7")
	sealed := c.Seal(nil, plain, aad)

	tests := []struct {
		name   string
		c      *keys.Cipher
		sealed []byte
		aad    []byte
	}{
		{"wrong aad", c, sealed, []byte("record-8")},
		{"missing aad", c, sealed, nil},
		{"other data key", newCipher(t), sealed, aad},
		{"empty", c, nil, aad},
		{"nonce only", c, sealed[:12], aad},
		{"shorter than overhead", c, sealed[:keys.Overhead-1], aad},
		{"tag cut off", c, sealed[:len(sealed)-1], aad},
		{"extra byte", c, append(bytes.Clone(sealed), 0), aad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.c.Open(nil, tt.sealed, tt.aad)
			if !errors.Is(err, keys.ErrDecrypt) {
				t.Fatalf("Open = %q, %v; want ErrDecrypt", got, err)
			}
		})
	}
	t.Run("every byte flipped", func(t *testing.T) {
		for i := range sealed {
			for _, bit := range []byte{0x01, 0x80} {
				bad := bytes.Clone(sealed)
				bad[i] ^= bit
				if _, err := c.Open(nil, bad, aad); !errors.Is(err, keys.ErrDecrypt) {
					t.Fatalf("byte %d ^ %#x: Open err = %v, want ErrDecrypt", i, bit, err)
				}
			}
		}
	})
}

func TestNewCipherKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		if _, err := keys.NewCipher(make([]byte, n)); err == nil || !strings.Contains(err.Error(), "want 32") {
			t.Errorf("NewCipher(%d bytes) err = %v, want one asking for 32 bytes", n, err)
		}
	}
}

func TestNewDataKey(t *testing.T) {
	a, err := keys.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := keys.NewDataKey()
	if len(a) != keys.KeySize || bytes.Equal(a, b) {
		t.Fatalf("NewDataKey gave %d bytes, or twice the same key", len(a))
	}
}

func FuzzOpen(f *testing.F) {
	var dek [32]byte
	c, err := keys.NewCipher(dek[:])
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.Seal(nil, []byte("hello"), []byte("aad")), []byte("aad"))
	f.Add(c.Seal(nil, nil, nil), []byte{})
	f.Add([]byte{}, []byte{})
	f.Add(make([]byte, keys.Overhead-1), []byte("x"))
	f.Fuzz(func(t *testing.T, sealed, aad []byte) {
		plain, err := c.Open(nil, sealed, aad)
		if err != nil {
			if !errors.Is(err, keys.ErrDecrypt) {
				t.Fatalf("Open err = %v, want ErrDecrypt", err)
			}
			return
		}
		// Only what Seal made opens: sealing it again must open to the same.
		again, err := c.Open(nil, c.Seal(nil, plain, aad), aad)
		if err != nil || !bytes.Equal(again, plain) {
			t.Fatalf("round trip of an opened input: %q, %v", again, err)
		}
	})
}
