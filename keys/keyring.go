package keys

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// checkEvery is how often Wrap, Current and List look at the keyring file
// for changes made by another process.
const checkEvery = time.Second

// Keyring is the file [KEK]: a text file holding one or more KEKs, each
// with an id, 32 random bytes and its creation time. Wrap uses the current
// KEK (the one marked current in the file, else the newest); Unwrap uses
// any KEK in the file. It is safe for concurrent use, also by several
// processes sharing the file (server nodes on a shared volume):
//
//   - Unwrap meeting a KEK id it does not hold re-reads the file if the file
//     changed since it was last read (a stat tells), so a node picks up a
//     KEK another process added without a restart.
//   - Wrap, Current and List look for changes at most once a second, so the
//     current KEK follows a rotation made elsewhere within about a second.
//   - Rotate and Remove re-read the file before rewriting it, so they keep
//     KEKs another process added. Two processes must not rotate or remove at
//     the same moment: run those commands from one place.
//
// The file format is described in docs/keys.md. Printing or logging a
// Keyring shows its path and current KEK id, never key bytes. Use
// CreateKeyring, OpenKeyring or OpenOrCreateKeyring to make one; the zero
// value is not usable.
type Keyring struct {
	path       string
	checkEvery time.Duration

	mu        sync.Mutex // serialises reading and writing the file
	state     atomic.Pointer[ring]
	lastCheck atomic.Int64                // unix nanoseconds of the last look at the file
	fileErr   atomic.Pointer[checkFailed] // why the file could not be re-read; nil if it could
}

// checkFailed holds the error of the last failed look at the file.
type checkFailed struct{ err error }

var _ KEK = (*Keyring)(nil)

// KEKInfo describes one KEK of a [Keyring]. It holds no key bytes.
type KEKInfo struct {
	ID      string
	Created time.Time
	Current bool // Wrap uses this KEK
}

func newKeyring(path string, r *ring) *Keyring {
	k := &Keyring{path: path, checkEvery: checkEvery}
	k.state.Store(r)
	k.lastCheck.Store(time.Now().UnixNano())
	return k
}

// CreateKeyring creates a keyring file at path, holding one new KEK, with
// mode 0600. It fails if path exists (wrapping fs.ErrExist) or its folder
// does not.
func CreateKeyring(path string) (*Keyring, error) {
	e, err := generateEntry(nil)
	if err != nil {
		return nil, fmt.Errorf("create keyring: %w", err)
	}
	r := newRing([]*entry{e}, e)
	fi, err := createFile(path, r.format())
	if err != nil {
		return nil, fmt.Errorf("create keyring: %w", err)
	}
	r.stamp = fi
	return newKeyring(path, r), nil
}

// OpenKeyring opens the keyring file at path. It refuses a file that group
// or others can read (the error names the path and the chmod that fixes
// it) and a malformed one (the error names the line). A missing file gives
// an error wrapping fs.ErrNotExist.
func OpenKeyring(path string) (*Keyring, error) {
	r, err := readRing(path)
	if err != nil {
		return nil, fmt.Errorf("open keyring: %w", err)
	}
	return newKeyring(path, r), nil
}

// OpenOrCreateKeyring opens the keyring file at path, or creates it as
// CreateKeyring does if it does not exist, and reports whether it created
// it.
func OpenOrCreateKeyring(path string) (*Keyring, bool, error) {
	k, err := OpenKeyring(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, false, err
	}
	k, err = CreateKeyring(path)
	if errors.Is(err, fs.ErrExist) { // another process created it first
		k, err = OpenKeyring(path)
		return k, false, err
	}
	return k, err == nil, err
}

// Path returns the keyring file's path.
func (k *Keyring) Path() string { return k.path }

// Current returns the id of the KEK that Wrap uses.
func (k *Keyring) Current() string {
	k.refresh()
	return k.state.Load().current.id
}

// List describes the keyring's KEKs in file order (oldest first, as
// Rotate appends).
func (k *Keyring) List() []KEKInfo {
	k.refresh()
	r := k.state.Load()
	out := make([]KEKInfo, len(r.keks))
	for i, e := range r.keks {
		out[i] = KEKInfo{ID: e.id, Created: e.created, Current: e == r.current}
	}
	return out
}

// Wrap wraps dek, which must be KeySize bytes, with the current KEK and
// binds it to aad. The result is the header [AppendHeader] writes followed
// by a 12-byte nonce and the AES-256-GCM encryption of dek (48 bytes),
// whose additional data is the header followed by aad. If the keyring file
// can no longer be read (removed, malformed, made public), Wrap fails
// rather than wrap with a KEK that may be gone.
func (k *Keyring) Wrap(ctx context.Context, dek, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("wrap data key: %w", err)
	}
	if len(dek) != KeySize {
		return nil, fmt.Errorf("wrap data key: data key is %d bytes, want %d", len(dek), KeySize)
	}
	if err := k.refresh(); err != nil {
		return nil, fmt.Errorf("wrap data key: %w", err)
	}
	e := k.state.Load().current
	out := make([]byte, 0, 2+len(e.id)+Overhead+KeySize)
	out, err := AppendHeader(out, e.id)
	if err != nil {
		return nil, fmt.Errorf("wrap data key: %w", err)
	}
	return e.aead.Seal(out, nil, dek, additionalData(out, aad)), nil
}

// Unwrap returns the data key that Wrap wrapped with the same aad. A KEK
// id the keyring does not hold gives an error wrapping [ErrUnknownKEK]
// (after re-reading the file if it changed); a malformed or altered
// wrapped key, or another aad, gives one wrapping [ErrUnwrap].
func (k *Keyring) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	id, body, err := ParseWrapped(wrapped)
	if err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	e := k.state.Load().byID[id]
	if e == nil {
		if e, err = k.reloadFor(id); e == nil {
			if err != nil {
				return nil, fmt.Errorf("unwrap data key: KEK %s: %w (re-reading the keyring failed: %v)", id, ErrUnknownKEK, err)
			}
			return nil, fmt.Errorf("unwrap data key: KEK %s: %w", id, ErrUnknownKEK)
		}
	}
	if len(body) != Overhead+KeySize {
		return nil, fmt.Errorf("unwrap data key with KEK %s: body is %d bytes, want %d: %w", id, len(body), Overhead+KeySize, ErrUnwrap)
	}
	header := wrapped[:len(wrapped)-len(body)]
	dek, err := e.aead.Open(make([]byte, 0, KeySize), nil, body, additionalData(header, aad))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key with KEK %s: %w", id, ErrUnwrap)
	}
	return dek, nil
}

// additionalData is the AEAD additional data of a wrapped key: its header
// (which names the KEK and is self-delimiting) followed by the caller's aad.
func additionalData(header, aad []byte) []byte {
	ad := make([]byte, 0, len(header)+len(aad))
	return append(append(ad, header...), aad...)
}

// Rotate adds a new KEK to the keyring and makes it current, so Wrap uses
// it from now on while Unwrap still accepts every older KEK. It re-reads
// the file first, then replaces it atomically. It returns the new KEK's id.
func (k *Keyring) Rotate() (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	r, err := k.load()
	if err != nil {
		return "", fmt.Errorf("rotate keyring: %w", err)
	}
	e, err := generateEntry(r.byID)
	if err != nil {
		return "", fmt.Errorf("rotate keyring: %w", err)
	}
	keks := append(r.keks[:len(r.keks):len(r.keks)], e)
	if err := k.write(newRing(keks, e)); err != nil {
		return "", fmt.Errorf("rotate keyring: %w", err)
	}
	return e.id, nil
}

// Remove deletes the KEK id from the keyring. Every data key it still
// wraps, and all content under those, becomes unrecoverable: re-wrap them
// with the current KEK first. It refuses the current KEK, and a KEK the
// file does not hold gives an error wrapping [ErrUnknownKEK]. It re-reads
// the file first, then replaces it atomically.
func (k *Keyring) Remove(id string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	r, err := k.load()
	if err != nil {
		return fmt.Errorf("remove KEK %s: %w", id, err)
	}
	e := r.byID[id]
	switch {
	case e == nil:
		return fmt.Errorf("remove KEK %s: %w", id, ErrUnknownKEK)
	case e == r.current:
		return fmt.Errorf("remove KEK %s: %w", id, errCurrent)
	}
	keks := make([]*entry, 0, len(r.keks)-1)
	for _, x := range r.keks {
		if x != e {
			keks = append(keks, x)
		}
	}
	if err := k.write(newRing(keks, r.current)); err != nil {
		return fmt.Errorf("remove KEK %s: %w", id, err)
	}
	return nil
}

// Reload re-reads the keyring file, for instance after another process
// rotated it. On error the keyring keeps its KEKs, and Wrap fails until
// the file can be read again.
func (k *Keyring) Reload() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, err := k.load(); err != nil {
		return fmt.Errorf("reload keyring: %w", err)
	}
	return nil
}

// load reads the file and makes it the keyring's state. k.mu must be held.
func (k *Keyring) load() (*ring, error) {
	r, err := readRing(k.path)
	k.lastCheck.Store(time.Now().UnixNano())
	if err != nil {
		k.fileErr.Store(&checkFailed{err})
		return nil, err
	}
	k.fileErr.Store(nil)
	k.state.Store(r)
	return r, nil
}

// write replaces the file with r and makes r the keyring's state. k.mu
// must be held.
func (k *Keyring) write(r *ring) error {
	fi, err := replaceFile(k.path, r.format())
	if err != nil {
		return err
	}
	r.stamp = fi
	k.state.Store(r)
	return nil
}

// loadIfChanged re-reads the file if a stat says it changed since it was
// last read. k.mu must be held.
func (k *Keyring) loadIfChanged() error {
	fi, err := os.Stat(k.path)
	if err != nil {
		k.lastCheck.Store(time.Now().UnixNano())
		k.fileErr.Store(&checkFailed{err})
		return err
	}
	if !changed(fi, k.state.Load().stamp) && k.fileErr.Load() == nil {
		k.lastCheck.Store(time.Now().UnixNano())
		return nil
	}
	_, err = k.load()
	return err
}

// refresh looks at the file for changes if it has not for checkEvery, and
// returns why the file cannot be read, if it cannot.
func (k *Keyring) refresh() error {
	if last := k.lastCheck.Load(); time.Now().UnixNano()-last >= int64(k.checkEvery) &&
		k.lastCheck.CompareAndSwap(last, time.Now().UnixNano()) {
		k.mu.Lock()
		k.loadIfChanged()
		k.mu.Unlock()
	}
	if f := k.fileErr.Load(); f != nil {
		return fmt.Errorf("read keyring: %w", f.err)
	}
	return nil
}

// reloadFor re-reads the file, if it changed, to find the KEK id, and
// returns it, or nil if the file does not hold it either.
func (k *Keyring) reloadFor(id string) (*entry, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e := k.state.Load().byID[id]; e != nil { // another goroutine reloaded
		return e, nil
	}
	err := k.loadIfChanged()
	return k.state.Load().byID[id], err
}

// String describes the keyring without revealing key bytes.
func (k *Keyring) String() string {
	r := k.state.Load()
	if r == nil {
		return "keys.Keyring{}"
	}
	return fmt.Sprintf("keys.Keyring{path: %s, current: %s, keks: %d}", k.path, r.current.id, len(r.keks))
}

// GoString implements fmt.GoStringer without revealing key bytes.
func (k *Keyring) GoString() string { return k.String() }

// LogValue implements slog.LogValuer without revealing key bytes.
func (k *Keyring) LogValue() slog.Value {
	r := k.state.Load()
	if r == nil {
		return slog.GroupValue()
	}
	return slog.GroupValue(
		slog.String("path", k.path),
		slog.String("current", r.current.id),
		slog.Int("keks", len(r.keks)),
	)
}

// Format implements fmt.Formatter so that no verb reveals key bytes.
func (k *Keyring) Format(f fmt.State, verb rune) { redact(f, verb, k) }
