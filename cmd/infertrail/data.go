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

	"golang.org/x/mod/sumdb/note"

	"github.com/infertrail/infertrail/keys"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/ledger/sshagent"
)

// The data folder holds the keys (never in the database, so that whoever
// can write the database still cannot forge a checkpoint) and, with the
// embedded store, the SQLite database.
const (
	logKeyFile = "log.key" // the checkpoint signing key (note private key)
	// logPubFile is the log's verifier key (note format) when an SSH
	// agent holds its signing key (signing.public_key), instead of
	// log.key.
	logPubFile    = "log.pub"
	secretKeyFile = "secret.key" // 32 random bytes, hex: keys MACs and content ids
	// contentKeysFile holds the key-encryption keys that wrap content's
	// data keys (package keys' keyring file).
	contentKeysFile = "content-keys"
	dbFile          = "infertrail.db"
	defaultData     = "infertrail-data"
)

// dataKeys are the keys of a data folder.
type dataKeys struct {
	skey   string // empty when an SSH agent signs (log.pub)
	vkey   string
	origin string
	secret []byte
	kek    *keys.Keyring // nil when opened without create and the file is missing
}

// openDataFolder creates dir (0700) if needed and loads its keys, creating
// them on first start. origin, if set, must match an existing key's.
// agentKey, if set, is the public key (authorized_keys form) of an SSH
// agent's key that signs checkpoints (signing.public_key): a new log then
// gets log.pub, its verifier key, instead of log.key, and an existing one
// must have been made with that key.
func openDataFolder(dir, origin string, create bool, agentKey string) (*dataKeys, bool, error) {
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, false, fmt.Errorf("create data folder: %w", err)
		}
	} else if _, err := os.Stat(dir); err != nil {
		return nil, false, withHint(fmt.Errorf("data folder %s: %w", dir, err), "give the folder that 'infertrail serve --data DIR' uses")
	}
	created := false
	keyPath, pubPath := filepath.Join(dir, logKeyFile), filepath.Join(dir, logPubFile)
	var skey, vkey string
	skey, keyErr := readKeyFile(keyPath)
	switch err := keyErr; {
	case err == nil:
		if agentKey != "" {
			return nil, false, withHint(fmt.Errorf("the log's checkpoints are signed with %s, but signing.public_key names an SSH agent's key", keyPath),
				"a log keeps the key it was made with: leave signing out of the config, or start a new data folder with the agent's key")
		}
		if _, _, vkey, err = ledger.KeyPair(skey); err != nil {
			return nil, false, fmt.Errorf("%s: %w", keyPath, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, err
	default:
		vkey, err = readVerifierKey(pubPath)
		switch {
		case err == nil:
			if agentKey != "" {
				if err := sameKey(vkey, agentKey, pubPath); err != nil {
					return nil, false, err
				}
			}
		case !errors.Is(err, fs.ErrNotExist):
			return nil, false, err
		case !create:
			return nil, false, keyErr
		default:
			if origin == "" {
				var b [4]byte
				rand.Read(b[:])
				origin = "infertrail.local/log-" + hex.EncodeToString(b[:])
			}
			if err := ledger.CheckOrigin(origin); err != nil {
				return nil, false, withHint(fmt.Errorf("origin %q: %w", origin, err), "an origin looks like example.com/audit-log: printable ASCII, no spaces or '+'")
			}
			if agentKey != "" {
				if vkey, err = agentVerifierKey(origin, agentKey); err != nil {
					return nil, false, err
				}
				if err := writeNewFile(pubPath, []byte(vkey+"\n")); err != nil {
					return nil, false, err
				}
			} else {
				sk, vk, err := ledger.GenerateKey(origin)
				if err != nil {
					return nil, false, err
				}
				if err := writeNewFile(keyPath, []byte(sk+"\n")); err != nil {
					return nil, false, err
				}
				skey, vkey = sk, vk
			}
			created = true
		}
	}
	name := strings.SplitN(vkey, "+", 2)[0]
	if origin != "" && origin != name {
		return nil, false, withHint(fmt.Errorf("the log's origin is %q (from its key in %s), not %q", name, dir, origin),
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

// signer returns the signer and verifier of the log's checkpoints: of
// log.key, or of the SSH agent that sc names when the folder has log.pub.
// An agent is not reached here: ledger.Open signs with it to check it.
func (dk *dataKeys) signer(sc signingConfig) (note.Signer, note.Verifier, error) {
	if dk.skey != "" {
		s, v, _, err := ledger.KeyPair(dk.skey)
		return s, v, err
	}
	if sc.PublicKey == "" {
		return nil, nil, withHint(fmt.Errorf("the log's checkpoints are signed by an SSH agent (its data folder has %s and no %s), but the config has no signing.public_key", logPubFile, logKeyFile),
			"give the config file with signing.public_key (and signing.ssh_agent) that the server uses")
	}
	s, err := sshagent.New(sc.SSHAgent, dk.origin, sc.PublicKey, sc.Timeout)
	if err != nil {
		return nil, nil, err
	}
	if s.VerifierKey() != dk.vkey {
		return nil, nil, fmt.Errorf("signing.public_key is not the key of the log's %s (%s)", logPubFile, dk.vkey)
	}
	v, err := note.NewVerifier(dk.vkey)
	return s, v, err
}

// verifier returns the verifier of the log's checkpoints.
func (dk *dataKeys) verifier() (note.Verifier, error) {
	return note.NewVerifier(dk.vkey)
}

// readVerifierKey reads log.pub, a note verifier key.
func readVerifierKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	vkey := strings.TrimSpace(string(b))
	if _, err := note.NewVerifier(vkey); err != nil {
		return "", fmt.Errorf("%s: not a verifier key: %w", path, err)
	}
	return vkey, nil
}

// sameKey fails unless the verifier key vkey (from path) is the Ed25519
// key agentKey (an authorized_keys line).
func sameKey(vkey, agentKey, path string) error {
	want, err := agentVerifierKey(strings.SplitN(vkey, "+", 2)[0], agentKey)
	if err != nil {
		return err
	}
	if want != vkey {
		return withHint(fmt.Errorf("signing.public_key is not the key the log's checkpoints are signed with (%s holds %s)", path, vkey),
			"a log keeps the key it was made with: give that key's public half")
	}
	return nil
}

// agentVerifierKey is the verifier key of the log origin whose
// checkpoints the agent's key agentKey (signing.public_key) signs.
func agentVerifierKey(origin, agentKey string) (string, error) {
	vkey, err := sshagent.VerifierKey(origin, agentKey)
	if err != nil {
		return "", withHint(fmt.Errorf("signing.public_key: %w", err), "give the line of the key's .pub file, as ssh-add -L prints it")
	}
	return vkey, nil
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
