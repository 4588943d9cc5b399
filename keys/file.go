package keys

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// fileMagic is the first line of a keyring file that is not a comment.
const fileMagic = "infertrail-keyring v1"

// maxFileSize bounds what OpenKeyring reads: a KEK line is about 100 bytes.
const maxFileSize = 1 << 20

// fileComment opens every keyring file this package writes.
const fileComment = `# InferTrail keyring: the key-encryption keys (KEKs) that wrap the data keys
# of stored content. Keep it secret (mode 0600) and out of database backups.
# Removing a KEK erases all content whose data keys it still wraps.
# Lines: KEK id, time created, key (64 hex digits), "current" on the KEK
# that wraps new data keys (default: the newest).
`

// keyBytes is a KEK's key. It never prints.
type keyBytes [KeySize]byte

func (keyBytes) String() string                  { return "[redacted]" }
func (keyBytes) GoString() string                { return "keys.keyBytes{[redacted]}" }
func (keyBytes) LogValue() slog.Value            { return slog.StringValue("[redacted]") }
func (b keyBytes) Format(f fmt.State, verb rune) { redact(f, verb, b) }

// entry is one KEK of a keyring.
type entry struct {
	id      string
	created time.Time
	key     keyBytes
	aead    cipher.AEAD // AES-256-GCM with random nonces under key
}

func newEntryFromKey(id string, created time.Time, key keyBytes) (*entry, error) {
	b, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCMWithRandomNonce(b)
	if err != nil {
		return nil, err
	}
	return &entry{id: id, created: created.UTC(), key: key, aead: a}, nil
}

// generateEntry makes a new KEK whose id is not in taken. The id is
// random, never derived from the key.
func generateEntry(taken map[string]*entry) (*entry, error) {
	var key keyBytes
	if _, err := rand.Read(key[:]); err != nil {
		return nil, fmt.Errorf("generate KEK: %w", err)
	}
	for {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("generate KEK id: %w", err)
		}
		id := "kek-" + hex.EncodeToString(b[:])
		if taken[id] == nil {
			return newEntryFromKey(id, time.Now().Truncate(time.Second), key)
		}
	}
}

// ring is one immutable reading of a keyring file.
type ring struct {
	keks    []*entry // in file order
	byID    map[string]*entry
	current *entry
	stamp   os.FileInfo // the file this was read from or written to; nil if none
}

func newRing(keks []*entry, current *entry) *ring {
	r := &ring{keks: keks, byID: make(map[string]*entry, len(keks)), current: current}
	for _, e := range keks {
		r.byID[e.id] = e
	}
	return r
}

// parseKeyring parses the text of a keyring file. Errors name the line
// and never quote it, as it may hold a key.
func parseKeyring(src []byte) (*ring, error) {
	var (
		keks     []*entry
		byID     = map[string]int{}
		current  *entry
		sawMagic bool
		lineNo   int
	)
	for len(src) > 0 {
		lineNo++
		var line []byte
		line, src, _ = bytes.Cut(src, []byte("\n"))
		text := strings.TrimSpace(string(line))
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if !sawMagic {
			if text != fileMagic {
				return nil, fmt.Errorf("line %d: want %q, the first line of a keyring that is not a comment", lineNo, fileMagic)
			}
			sawMagic = true
			continue
		}
		f := strings.Fields(text)
		if len(f) != 3 && len(f) != 4 {
			return nil, fmt.Errorf("line %d: want a KEK id, its creation time, its key and optionally \"current\"; found %d fields", lineNo, len(f))
		}
		if err := checkID(f[0]); err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		if prev, dup := byID[f[0]]; dup {
			return nil, fmt.Errorf("line %d: KEK %s is also on line %d", lineNo, f[0], prev)
		}
		created, err := time.Parse(time.RFC3339Nano, f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: creation time is not RFC 3339 (2006-01-02T15:04:05Z)", lineNo)
		}
		var key keyBytes
		if len(f[2]) != 2*KeySize {
			return nil, fmt.Errorf("line %d: key is %d characters, want %d hex digits", lineNo, len(f[2]), 2*KeySize)
		}
		if _, err := hex.Decode(key[:], []byte(f[2])); err != nil {
			return nil, fmt.Errorf("line %d: key is not %d hex digits", lineNo, 2*KeySize)
		}
		if key == (keyBytes{}) {
			return nil, fmt.Errorf("line %d: key is all zeros", lineNo)
		}
		e, err := newEntryFromKey(f[0], created, key)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		if len(f) == 4 {
			if f[3] != "current" {
				return nil, fmt.Errorf("line %d: fourth field must be \"current\" or absent", lineNo)
			}
			if current != nil {
				return nil, fmt.Errorf("line %d: a second KEK is marked current (the first is %s)", lineNo, current.id)
			}
			current = e
		}
		byID[e.id] = lineNo
		keks = append(keks, e)
	}
	if !sawMagic {
		return nil, fmt.Errorf("line %d: no %q line: not a keyring", lineNo+1, fileMagic)
	}
	if len(keks) == 0 {
		return nil, fmt.Errorf("line %d: the keyring holds no KEK", lineNo+1)
	}
	if current == nil {
		current = keks[0]
		for _, e := range keks[1:] {
			if !e.created.Before(current.created) {
				current = e
			}
		}
	}
	return newRing(keks, current), nil
}

// format returns the text of r as a keyring file, marking its current KEK.
func (r *ring) format() []byte {
	var b bytes.Buffer
	b.WriteString(fileComment)
	b.WriteString(fileMagic + "\n")
	for _, e := range r.keks {
		b.WriteString(e.id)
		b.WriteByte(' ')
		b.WriteString(e.created.UTC().Format(time.RFC3339Nano))
		b.WriteByte(' ')
		var h [2 * KeySize]byte
		hex.Encode(h[:], e.key[:])
		b.Write(h[:])
		if e == r.current {
			b.WriteString(" current")
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// readRing reads and parses the keyring file at path, refusing one that
// group or others can read.
func readRing(path string) (*ring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if err := checkMode(path, fi); err != nil {
		return nil, err
	}
	src, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(src) > maxFileSize {
		return nil, fmt.Errorf("%s is over %d bytes: not a keyring", path, maxFileSize)
	}
	r, err := parseKeyring(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r.stamp = fi
	return r, nil
}

// checkMode refuses a key file that group or others may read or write.
// Windows has no such mode bits; there the folder's ACL must protect it.
func checkMode(path string, fi os.FileInfo) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s has mode %#o, so group or others can read it; a keyring must be private: run chmod 600 %s", path, perm, path)
	}
	return nil
}

// createFile writes data to a new file at path with mode 0600, failing if
// path exists.
func createFile(path string, data []byte) (os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	fi, err := writeSync(f, data)
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	return fi, nil
}

// replaceFile replaces the file at path with data atomically: a temporary
// file in the same folder, fsync, rename over path, fsync of the folder.
// The new file has mode 0600.
func replaceFile(path string, data []byte) (os.FileInfo, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	fi, err := writeSync(f, data)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return fi, nil
}

// writeSync writes data to f, makes it 0600 whatever the umask, syncs and
// closes it, and returns its FileInfo.
func writeSync(f *os.File, data []byte) (os.FileInfo, error) {
	err := f.Chmod(0o600)
	if runtime.GOOS == "windows" {
		err = nil
	}
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	var fi os.FileInfo
	if err == nil {
		fi, err = f.Stat()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return fi, err
}

// syncDir makes a rename or a creation in dir durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // Windows cannot open a folder for syncing
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync folder %s: %w", dir, err)
	}
	return nil
}

// changed reports whether the file that fi describes is not the one old
// was taken from, or has changed since.
func changed(fi, old os.FileInfo) bool {
	return old == nil || !os.SameFile(fi, old) || fi.Size() != old.Size() ||
		!fi.ModTime().Equal(old.ModTime()) || fi.Mode() != old.Mode()
}

var errCurrent = errors.New("it is the current KEK; rotate first")
