package ledgertest

import (
	"path/filepath"
	"testing"

	"github.com/infertrail/infertrail/keys"
)

// NewKEK returns a key-encryption key in a fresh key file under tb's temp
// folder, for a ledger.Config's KEK.
func NewKEK(tb testing.TB) *keys.Keyring {
	tb.Helper()
	k, err := keys.CreateKeyring(filepath.Join(tb.TempDir(), "content-keys"))
	if err != nil {
		tb.Fatalf("create keyring: %v", err)
	}
	return k
}
