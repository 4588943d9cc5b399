package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/infertrail/infertrail/keys"
	"github.com/infertrail/infertrail/ledger"
)

// The data folder holds the keys (never in the database, so that whoever
// can write the database still cannot forge a checkpoint) and, with the
// embedded store, the SQLite database.
const (
	logKeyFile    = "log.key"    // the checkpoint signing key (note private key)
	secretKeyFile = "secret.key" // 32 random bytes, hex: keys MACs and content ids
	// contentKeysFile holds the key-encryption keys that wrap content's
	// data keys (package keys' keyring file).
	contentKeysFile = "content-keys"
	dbFile          = "infertrail.db"
	defaultData     = "infertrail-data"
)

// dataKeys are the keys of a data folder.
type dataKeys struct {
	skey   string
	vkey   string
	origin string
	secret []byte
	kek    *keys.Keyring // nil when opened without create and the file is missing
}

// openDataFolder creates dir (0700) if needed and loads its keys, creating
// them on first start. origin, if set, must match an existing key's.
func openDataFolder(dir, origin string, create bool) (*dataKeys, bool, error) {
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, false, fmt.Errorf("create data folder: %w", err)
		}
	} else if _, err := os.Stat(dir); err != nil {
		return nil, false, withHint(fmt.Errorf("data folder %s: %w", dir, err), "give the folder that 'infertrail serve --data DIR' uses")
	}
	created := false
	keyPath := filepath.Join(dir, logKeyFile)
	skey, err := readKeyFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) && create {
		if origin == "" {
			var b [4]byte
			rand.Read(b[:])
			origin = "infertrail.local/log-" + hex.EncodeToString(b[:])
		}
		if err := ledger.CheckOrigin(origin); err != nil {
			return nil, false, withHint(fmt.Errorf("origin %q: %w", origin, err), "an origin looks like example.com/audit-log: printable ASCII, no spaces or '+'")
		}
		sk, _, err := ledger.GenerateKey(origin)
		if err != nil {
			return nil, false, err
		}
		if err := writeNewFile(keyPath, []byte(sk+"\n")); err != nil {
			return nil, false, err
		}
		skey, created = sk, true
	} else if err != nil {
		return nil, false, err
	}
	_, _, vkey, err := ledger.KeyPair(skey)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", keyPath, err)
	}
	name := strings.SplitN(vkey, "+", 2)[0]
	if origin != "" && origin != name {
		return nil, false, withHint(fmt.Errorf("the log's origin is %q (from %s), not %q", name, keyPath, origin),
			"the origin is fixed when the key is created; leave --origin out or use a new data folder")
	}
	secretPath := filepath.Join(dir, secretKeyFile)
	secretHex, err := readKeyFile(secretPath)
	if errors.Is(err, fs.ErrNotExist) && create {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, false, err
		}
		secretHex = hex.EncodeToString(b[:])
		if err := writeNewFile(secretPath, []byte(secretHex+"\n")); err != nil {
			return nil, false, err
		}
	} else if err != nil {
		return nil, false, err
	}
	secret, err := hex.DecodeString(secretHex)
	if err != nil || len(secret) < 32 {
		return nil, false, fmt.Errorf("%s: want at least 64 hex digits", secretPath)
	}
	kekPath := filepath.Join(dir, contentKeysFile)
	var kek *keys.Keyring
	if create {
		kek, _, err = keys.OpenOrCreateKeyring(kekPath)
	} else if kek, err = keys.OpenKeyring(kekPath); errors.Is(err, fs.ErrNotExist) {
		kek, err = nil, nil
	}
	if err != nil {
		return nil, false, err
	}
	return &dataKeys{skey: skey, vkey: vkey, origin: name, secret: secret, kek: kek}, created, nil
}

// readKeyFile reads a key file and refuses one that others can read.
func readKeyFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", withHint(fmt.Errorf("key file %s has permissions %v: others can read it", path, fi.Mode().Perm()),
			"chmod 600 "+path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// writeNewFile writes a file with mode 0600, failing if it exists.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}
