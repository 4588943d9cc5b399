package keys_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infertrail/infertrail/keys"
)

func newKeyring(tb testing.TB) *keys.Keyring {
	tb.Helper()
	k, err := keys.CreateKeyring(filepath.Join(tb.TempDir(), "keyring"))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func wrapNew(tb testing.TB, k keys.KEK, aad string) (dek, wrapped []byte) {
	tb.Helper()
	dek, err := keys.NewDataKey()
	if err != nil {
		tb.Fatal(err)
	}
	wrapped, err = k.Wrap(context.Background(), dek, []byte(aad))
	if err != nil {
		tb.Fatal(err)
	}
	return dek, wrapped
}

func mustUnwrap(tb testing.TB, k keys.KEK, wrapped []byte, aad string, want []byte) {
	tb.Helper()
	got, err := k.Unwrap(context.Background(), wrapped, []byte(aad))
	if err != nil {
		tb.Fatalf("Unwrap: %v", err)
	}
	if !bytes.Equal(got, want) {
		tb.Fatalf("Unwrap gave another key")
	}
}

func TestCreateKeyring(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring")
	k, err := keys.CreateKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	list := k.List()
	if len(list) != 1 || !list[0].Current || list[0].ID != k.Current() {
		t.Fatalf("List = %+v, Current = %q", list, k.Current())
	}
	if id := k.Current(); !strings.HasPrefix(id, "kek-") || len(id) != 12 {
		t.Errorf("Current = %q, want kek- and 8 hex digits", id)
	}
	if time.Since(list[0].Created) > time.Minute {
		t.Errorf("Created = %v", list[0].Created)
	}
	if _, err := keys.CreateKeyring(path); !errors.Is(err, fs.ErrExist) {
		t.Errorf("CreateKeyring over an existing file: %v, want ErrExist", err)
	}
	if _, err := keys.CreateKeyring(filepath.Join(t.TempDir(), "missing", "keyring")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CreateKeyring in a missing folder: %v, want ErrNotExist", err)
	}
	k2, err := keys.OpenKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	_, wrapped := wrapNew(t, k, "dek-1")
	if _, err := k2.Unwrap(t.Context(), wrapped, []byte("dek-1")); err != nil {
		t.Fatalf("a reopened keyring does not unwrap: %v", err)
	}
}

func TestCreateKeyringIgnoresUmask(t *testing.T) {
	// A keyring stays 0600 however it was made; mode bits only shrink
	// with a umask, and rewriting restores 0600.
	k := newKeyring(t)
	if err := os.Chmod(k.Path(), 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(k.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after Rotate = %v, want 0600", fi.Mode().Perm())
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(k.Path()), ".*tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestOpenOrCreateKeyring(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring")
	k1, created, err := keys.OpenOrCreateKeyring(path)
	if err != nil || !created {
		t.Fatalf("first OpenOrCreateKeyring: created=%v, %v", created, err)
	}
	k2, created, err := keys.OpenOrCreateKeyring(path)
	if err != nil || created {
		t.Fatalf("second OpenOrCreateKeyring: created=%v, %v", created, err)
	}
	if k1.Current() != k2.Current() {
		t.Fatalf("Current %q and %q differ", k1.Current(), k2.Current())
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := keys.OpenOrCreateKeyring(path); err == nil {
		t.Fatal("OpenOrCreateKeyring accepted a 0644 keyring")
	}
}

func TestKeyringWrapUnwrap(t *testing.T) {
	k := newKeyring(t)
	dek, wrapped := wrapNew(t, k, "dek-1")
	mustUnwrap(t, k, wrapped, "dek-1", dek)
	if by, err := keys.WrappedBy(wrapped); by != k.Current() || err != nil {
		t.Fatalf("WrappedBy = %q, %v; want %q", by, err, k.Current())
	}
	if got, want := len(wrapped), 2+len(k.Current())+12+32+16; got != want {
		t.Errorf("wrapped key is %d bytes, want %d", got, want)
	}
	if bytes.Contains(wrapped, dek) {
		t.Fatal("the wrapped key holds the data key")
	}
	_, again := wrapNew(t, k, "dek-1")
	if bytes.Equal(again, wrapped) {
		t.Fatal("two wraps gave the same bytes")
	}

	other := newKeyring(t)
	tests := []struct {
		name    string
		kek     keys.KEK
		wrapped []byte
		aad     string
		want    error
	}{
		{"wrong aad", k, wrapped, "dek-2", keys.ErrUnwrap},
		{"empty aad", k, wrapped, "", keys.ErrUnwrap},
		{"truncated", k, wrapped[:len(wrapped)-1], "dek-1", keys.ErrUnwrap},
		{"extended", k, append(bytes.Clone(wrapped), 0), "dek-1", keys.ErrUnwrap},
		{"header only", k, wrapped[:2+len(k.Current())], "dek-1", keys.ErrUnwrap},
		{"empty", k, nil, "dek-1", keys.ErrUnwrap},
		{"unknown KEK", other, wrapped, "dek-1", keys.ErrUnknownKEK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.kek.Unwrap(t.Context(), tt.wrapped, []byte(tt.aad))
			if !errors.Is(err, tt.want) || got != nil {
				t.Fatalf("Unwrap = %x, %v; want %v", got, err, tt.want)
			}
		})
	}

	t.Run("every byte flipped", func(t *testing.T) {
		idEnd := 2 + len(k.Current())
		for i := range wrapped {
			bad := bytes.Clone(wrapped)
			bad[i] ^= 0x01
			got, err := k.Unwrap(t.Context(), bad, []byte("dek-1"))
			if got != nil || err == nil {
				t.Fatalf("byte %d flipped: Unwrap succeeded", i)
			}
			// A flip in the header may name another, unknown KEK; a
			// flip in the body must fail to authenticate.
			if !errors.Is(err, keys.ErrUnwrap) && !(i < idEnd && errors.Is(err, keys.ErrUnknownKEK)) {
				t.Fatalf("byte %d flipped: err = %v", i, err)
			}
		}
	})

	t.Run("id swapped", func(t *testing.T) {
		// Renaming the KEK in the header, even to one of the same key,
		// fails: the header is authenticated.
		path := filepath.Join(t.TempDir(), "keyring")
		src, err := os.ReadFile(k.Path())
		if err != nil {
			t.Fatal(err)
		}
		alias := strings.Replace(string(src), k.Current(), "kek-alias", 1)
		alias = strings.Replace(alias, " current", "", 1)
		if err := os.WriteFile(path, []byte(string(src)+strings.SplitN(alias, "infertrail-keyring v1\n", 2)[1]), 0o600); err != nil {
			t.Fatal(err)
		}
		both, err := keys.OpenKeyring(path)
		if err != nil {
			t.Fatal(err)
		}
		mustUnwrap(t, both, wrapped, "dek-1", dek)
		swapped, err := keys.AppendHeader(nil, "kek-alias")
		if err != nil {
			t.Fatal(err)
		}
		_, body, _ := keys.ParseWrapped(wrapped)
		swapped = append(swapped, body...)
		if _, err := both.Unwrap(t.Context(), swapped, []byte("dek-1")); !errors.Is(err, keys.ErrUnwrap) {
			t.Fatalf("Unwrap with the id swapped: %v, want ErrUnwrap", err)
		}
	})

	t.Run("bad data key", func(t *testing.T) {
		for _, n := range []int{0, 16, 31, 33} {
			if _, err := k.Wrap(t.Context(), make([]byte, n), nil); err == nil {
				t.Errorf("Wrap accepted a %d-byte data key", n)
			}
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := k.Wrap(ctx, dek, nil); !errors.Is(err, context.Canceled) {
			t.Errorf("Wrap: %v", err)
		}
		if _, err := k.Unwrap(ctx, wrapped, []byte("dek-1")); !errors.Is(err, context.Canceled) {
			t.Errorf("Unwrap: %v", err)
		}
	})
}

func TestKeyringRotation(t *testing.T) {
	k := newKeyring(t)
	k1 := k.Current()
	dek1, w1 := wrapNew(t, k, "dek-1")

	k2, err := k.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if k2 == k1 || k.Current() != k2 {
		t.Fatalf("after Rotate: new %q, old %q, Current %q", k2, k1, k.Current())
	}
	mustUnwrap(t, k, w1, "dek-1", dek1)
	dek2, w2 := wrapNew(t, k, "dek-2")
	if by, _ := keys.WrappedBy(w2); by != k2 {
		t.Fatalf("new wrap is by %q, want %q", by, k2)
	}
	list := k.List()
	if len(list) != 2 || list[0].ID != k1 || list[0].Current || list[1].ID != k2 || !list[1].Current {
		t.Fatalf("List = %+v", list)
	}

	if err := k.Remove(k2); err == nil || !strings.Contains(err.Error(), "current") {
		t.Fatalf("Remove(current) = %v, want a refusal", err)
	}
	if err := k.Remove("kek-nothere"); !errors.Is(err, keys.ErrUnknownKEK) {
		t.Fatalf("Remove(unknown) = %v, want ErrUnknownKEK", err)
	}

	// The caller re-wraps dek-1 with the current KEK, then removes k1.
	rewrapped, err := k.Wrap(t.Context(), dek1, []byte("dek-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Remove(k1); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Unwrap(t.Context(), w1, []byte("dek-1")); !errors.Is(err, keys.ErrUnknownKEK) {
		t.Fatalf("Unwrap by a removed KEK: %v, want ErrUnknownKEK", err)
	}
	mustUnwrap(t, k, rewrapped, "dek-1", dek1)
	mustUnwrap(t, k, w2, "dek-2", dek2)

	// The file says the same after reopening.
	again, err := keys.OpenKeyring(k.Path())
	if err != nil {
		t.Fatal(err)
	}
	if l := again.List(); len(l) != 1 || l[0].ID != k2 || !l[0].Current {
		t.Fatalf("reopened List = %+v", l)
	}
	if _, err := again.Unwrap(t.Context(), w1, []byte("dek-1")); !errors.Is(err, keys.ErrUnknownKEK) {
		t.Fatalf("reopened Unwrap by a removed KEK: %v, want ErrUnknownKEK", err)
	}
}

// TestKeyringTwoNodes has two keyrings share one file, as two server nodes
// on a shared volume do.
func TestKeyringTwoNodes(t *testing.T) {
	a := newKeyring(t)
	b, err := keys.OpenKeyring(a.Path())
	if err != nil {
		t.Fatal(err)
	}
	old := a.Current()
	dek1, w1 := wrapNew(t, a, "dek-1")
	mustUnwrap(t, b, w1, "dek-1", dek1)

	newID, err := a.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	dek2, w2 := wrapNew(t, a, "dek-2")
	// b has not reloaded, yet it unwraps a key wrapped by the new KEK.
	mustUnwrap(t, b, w2, "dek-2", dek2)
	if b.Current() != newID {
		t.Errorf("b.Current = %q after reading the rotated file, want %q", b.Current(), newID)
	}

	// b rotates too, keeping a's KEKs.
	third, err := b.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if a.Current() != third {
		t.Fatalf("a.Current = %q after Reload, want %q", a.Current(), third)
	}
	if l := a.List(); len(l) != 3 || l[0].ID != old || l[1].ID != newID {
		t.Fatalf("a.List = %+v", l)
	}
	mustUnwrap(t, a, w1, "dek-1", dek1)

	// a removes the first KEK; b loses it once it re-reads the file.
	if err := a.Remove(old); err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Unwrap(t.Context(), w1, []byte("dek-1")); !errors.Is(err, keys.ErrUnknownKEK) {
		t.Fatalf("b unwraps by a removed KEK: %v", err)
	}
}

// TestKeyringFollowsFile checks that Wrap and Current follow a rotation
// made elsewhere without a Reload, and that Wrap stops when the file
// becomes unreadable rather than wrap with a KEK that may be gone.
func TestKeyringFollowsFile(t *testing.T) {
	a := newKeyring(t)
	b, err := keys.OpenKeyring(a.Path())
	if err != nil {
		t.Fatal(err)
	}
	keys.SetCheckEvery(b, 0)
	newID, err := a.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if b.Current() != newID {
		t.Fatalf("b.Current = %q, want %q", b.Current(), newID)
	}
	_, w := wrapNew(t, b, "dek")
	if by, _ := keys.WrappedBy(w); by != newID {
		t.Fatalf("b wrapped with %q, want %q", by, newID)
	}

	if err := os.Chmod(a.Path(), 0o644); err != nil {
		t.Fatal(err)
	}
	dek, _ := keys.NewDataKey()
	if _, err := b.Wrap(t.Context(), dek, nil); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Wrap with a public keyring file: %v", err)
	}
	if err := os.Chmod(a.Path(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Wrap(t.Context(), dek, nil); err != nil {
		t.Fatalf("Wrap after the file was fixed: %v", err)
	}
	if err := os.Remove(a.Path()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Wrap(t.Context(), dek, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Wrap with the keyring file gone: %v", err)
	}
	if err := b.Reload(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Reload with the file gone: %v", err)
	}
	mustUnwrap(t, b, w, "dek", mustUnwrapped(t, a, w, "dek"))
}

func mustUnwrapped(tb testing.TB, k keys.KEK, wrapped []byte, aad string) []byte {
	tb.Helper()
	dek, err := k.Unwrap(context.Background(), wrapped, []byte(aad))
	if err != nil {
		tb.Fatal(err)
	}
	return dek
}

func TestOpenKeyringPermissions(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o606} {
		k := newKeyring(t)
		if err := os.Chmod(k.Path(), mode); err != nil {
			t.Fatal(err)
		}
		_, err := keys.OpenKeyring(k.Path())
		if err == nil {
			t.Fatalf("OpenKeyring accepted mode %v", mode)
		}
		for _, want := range []string{k.Path(), "chmod 600 " + k.Path()} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("mode %v: error %q does not say %q", mode, err, want)
			}
		}
	}
	k := newKeyring(t)
	if err := os.Chmod(k.Path(), 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.OpenKeyring(k.Path()); err != nil {
		t.Errorf("OpenKeyring refused a 0400 file: %v", err)
	}
	if _, err := keys.OpenKeyring(filepath.Dir(k.Path())); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("OpenKeyring of a folder: %v", err)
	}
	if _, err := keys.OpenKeyring(filepath.Join(t.TempDir(), "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenKeyring of a missing file: %v", err)
	}
}

func TestOpenKeyringMalformed(t *testing.T) {
	const (
		key1 = "0101010101010101010101010101010101010101010101010101010101010101"
		key2 = "0202020202020202020202020202020202020202020202020202020202020202"
	)
	tests := []struct {
		name, src, want string
	}{
		{"empty", "", "line 1: no \"infertrail-keyring v1\" line"},
		{"comments only", "# nothing\n\n", "line 3: no \"infertrail-keyring v1\""},
		{"no magic", "kek-1 2026-01-01T00:00:00Z " + key1 + "\n", "line 1: want \"infertrail-keyring v1\""},
		{"other version", "infertrail-keyring v2\n", "line 1: want"},
		{"no keys", "# c\ninfertrail-keyring v1\n", "line 3: the keyring holds no KEK"},
		{"two fields", "infertrail-keyring v1\nkek-1 2026-01-01T00:00:00Z\n", "line 2: want a KEK id"},
		{"five fields", "infertrail-keyring v1\nkek-1 2026-01-01T00:00:00Z " + key1 + " current x\n", "line 2: want a KEK id"},
		{"bad id", "infertrail-keyring v1\nkek\x01 2026-01-01T00:00:00Z " + key1 + "\n", "line 2: KEK id has byte 0x01"},
		{"bad time", "infertrail-keyring v1\n\nkek-1 yesterday " + key1 + "\n", "line 3: creation time"},
		{"short key", "infertrail-keyring v1\nkek-1 2026-01-01T00:00:00Z " + key1[:62] + "\n", "line 2: key is 62 characters"},
		{"not hex", "infertrail-keyring v1\nkek-1 2026-01-01T00:00:00Z " + key1[:63] + "g\n", "line 2: key is not 64 hex digits"},
		{"zero key", "infertrail-keyring v1\nkek-1 2026-01-01T00:00:00Z " + strings.Repeat("0", 64) + "\n", "line 2: key is all zeros"},
		{"bad marker", "infertrail-keyring v1\nkek-1 2026-01-01T00:00:00Z " + key1 + " newest\n", "line 2: fourth field"},
		{"duplicate id", "infertrail-keyring v1\nkek-1 2026-01-01T00:00:00Z " + key1 + "\nkek-1 2026-01-02T00:00:00Z " + key2 + "\n", "line 3: KEK kek-1 is also on line 2"},
		{"two current", "infertrail-keyring v1\nkek-1 2026-01-01T00:00:00Z " + key1 + " current\nkek-2 2026-01-02T00:00:00Z " + key2 + " current\n", "line 3: a second KEK is marked current"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keyring")
			if err := os.WriteFile(path, []byte(tt.src), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := keys.OpenKeyring(path)
			if err == nil {
				t.Fatal("OpenKeyring accepted it")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s and say %q", err, path, tt.want)
			}
			for _, key := range []string{key1, key2, key1[:62], key1[:63]} {
				if strings.Contains(err.Error(), key) {
					t.Errorf("error %q quotes a key", err)
				}
			}
		})
	}
}

func TestOpenKeyringCurrent(t *testing.T) {
	const (
		key1 = "0101010101010101010101010101010101010101010101010101010101010101"
		key2 = "0202020202020202020202020202020202020202020202020202020202020202"
	)
	tests := []struct {
		name, src, want string
	}{
		{"newest", "infertrail-keyring v1\nkek-b 2026-02-01T00:00:00Z " + key2 + "\nkek-a 2026-01-01T00:00:00Z " + key1 + "\n", "kek-b"},
		{"tie goes to the later line", "infertrail-keyring v1\nkek-b 2026-01-01T00:00:00Z " + key2 + "\nkek-a 2026-01-01T00:00:00Z " + key1 + "\n", "kek-a"},
		{"marked", "infertrail-keyring v1\nkek-a 2026-01-01T00:00:00Z " + key1 + " current\nkek-b 2026-02-01T00:00:00Z " + key2 + "\n", "kek-a"},
		{"comments, blanks, spaces and CRLF", "# hi\r\n\r\n  infertrail-keyring v1  \r\n\tkek-a   2026-01-01T01:00:00+01:00 " + strings.ToUpper(key1) + "\r\n# end\r\n", "kek-a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keyring")
			if err := os.WriteFile(path, []byte(tt.src), 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := keys.OpenKeyring(path)
			if err != nil {
				t.Fatal(err)
			}
			if k.Current() != tt.want {
				t.Fatalf("Current = %q, want %q", k.Current(), tt.want)
			}
		})
	}
}

// TestKeyringConcurrent runs Wrap, Unwrap, Rotate, Reload and List at once;
// run it with -race.
func TestKeyringConcurrent(t *testing.T) {
	k := newKeyring(t)
	other, err := keys.OpenKeyring(k.Path())
	if err != nil {
		t.Fatal(err)
	}
	keys.SetCheckEvery(other, 0)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				kek := keys.KEK(k)
				if (w+i)%2 == 1 {
					kek = other
				}
				dek, wrapped := wrapNew(t, kek, "dek")
				mustUnwrap(t, k, wrapped, "dek", dek)
				mustUnwrap(t, other, wrapped, "dek", dek)
				_ = kek.Current()
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			if _, err := k.Rotate(); err != nil {
				t.Error(err)
			}
			if err := other.Reload(); err != nil {
				t.Error(err)
			}
			_ = other.List()
		}
	})
	wg.Wait()
	if n := len(k.List()); n != 6 {
		t.Fatalf("%d KEKs after 5 rotations, want 6", n)
	}
}
