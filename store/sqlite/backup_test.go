package sqlite

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/infertrail/infertrail"
)

// TestBackup copies a log to a file that opens as a log; a file already
// there, or a folder that is not, is refused and left as it is.
func TestBackup(t *testing.T) {
	ctx := t.Context()
	db := openTemp(t)
	defer db.Close()
	if err := db.AddCheckpoint(ctx, infertrail.StoredCheckpoint{Size: 0, Note: []byte("a note")}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "backup.db")
	size, err := db.Backup(ctx, out)
	if err != nil || size != 0 {
		t.Fatalf("Backup = %d, %v", size, err)
	}
	copied, err := Open(ctx, out, Config{})
	if err != nil {
		t.Fatalf("open the copy: %v", err)
	}
	defer copied.Close()
	if c, err := copied.LatestCheckpoint(ctx); err != nil || string(c.Note) != "a note" {
		t.Fatalf("the copy's checkpoint: %q, %v", c.Note, err)
	}

	if err := os.WriteFile(out+".taken", []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Backup(ctx, out+".taken"); !errors.Is(err, infertrail.ErrInvalid) {
		t.Fatalf("Backup over an existing file: %v, want ErrInvalid", err)
	}
	if b, _ := os.ReadFile(out + ".taken"); string(b) != "keep me" {
		t.Fatalf("the existing file was changed: %q", b)
	}
	if _, err := db.Backup(ctx, filepath.Join(t.TempDir(), "no", "such", "folder.db")); !errors.Is(err, infertrail.ErrInvalid) {
		t.Fatalf("Backup into a missing folder: %v, want ErrInvalid", err)
	}
}
