package sqlite

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/internal/testdisk"
	"github.com/infertrail/infertrail/store/storetest"
)

// dirFiles returns the names and contents of the files in dir.
func dirFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[de.Name()] = b
	}
	return out
}

// checkUnchanged fails unless the folder of the log's file at path holds
// after what it held before, byte for byte, but for the empty WAL files and
// the shared-memory files that SQLite makes beside files in WAL mode when
// it has none (as any reader does: a read-only connection cannot remove
// them, since a writer may be using them by then).
func checkUnchanged(t *testing.T, path string, before, after map[string][]byte) {
	t.Helper()
	for name, b := range after {
		prev, ok := before[name]
		switch {
		case !ok && strings.HasSuffix(name, ".db-wal") && len(b) == 0:
		case !ok && strings.HasSuffix(name, ".db-shm"):
		case !ok:
			t.Errorf("opening read-only made %s (%d bytes)", name, len(b))
		case !bytes.Equal(prev, b):
			t.Errorf("opening read-only changed %s", name)
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			t.Errorf("opening read-only removed %s", name)
		}
	}
}

// TestReadOnly opens a backup (a file in rollback-journal mode) and a
// closed log (WAL mode) read-only: both read as the log, and not one byte
// of their folders changes — no index file, no WAL, no journal mode
// switched; writes are refused.
func TestReadOnly(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	db, err := Open(ctx, filepath.Join(dir, "log.db"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	entries, blobs := storetest.MakeBatch(0, 40)
	storetest.AppendEntries(t, db, entries, blobs)
	if err := db.AddCheckpoint(ctx, infertrail.StoredCheckpoint{Size: 40, Note: []byte("checkpoint 40\n")}); err != nil {
		t.Fatal(err)
	}
	backups := t.TempDir()
	if _, err := db.Backup(ctx, filepath.Join(backups, "backup.db")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(backups, "backup.db"), filepath.Join(dir, "log.db")} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			before := dirFiles(t, filepath.Dir(path))
			ro, err := Open(ctx, path, Config{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			if n, err := ro.TreeSize(ctx); err != nil || n != 40 {
				t.Fatalf("TreeSize = %d, %v", n, err)
			}
			var got []int64
			if err := ro.Entries(ctx, 0, 40, func(e *infertrail.Entry) error {
				got = append(got, e.Seq)
				return nil
			}); err != nil || len(got) != 40 {
				t.Fatalf("Entries: %d, %v", len(got), err)
			}
			ids := map[infertrail.BlobID]bool{}
			for _, b := range blobs {
				ids[b.ID] = true
			}
			if bs, err := ro.Blobs(ctx, slices.Collect(maps.Keys(ids))); err != nil || len(bs) != len(ids) {
				t.Fatalf("Blobs: %d of %d, %v", len(bs), len(ids), err)
			}
			if c, err := ro.LatestCheckpoint(ctx); err != nil || c.Size != 40 {
				t.Fatalf("LatestCheckpoint: %+v, %v", c, err)
			}
			// The log has its index file beside it; the backup has none.
			_, hasIndex := before[filepath.Base(IndexPath(path))]
			err = ro.Findings(ctx, infertrail.FindingQuery{}, func(*infertrail.Finding) error { return nil })
			if hasIndex && err != nil || !hasIndex && !errors.Is(err, infertrail.ErrNoIndex) {
				t.Errorf("Findings (index file: %v): %v", hasIndex, err)
			}
			err = ro.Query(ctx, infertrail.Query{Keys: []string{"actor:x"}}, func(*infertrail.Entry) error { return nil })
			if hasIndex && err != nil || !hasIndex && !errors.Is(err, infertrail.ErrNoIndex) {
				t.Errorf("Query (index file: %v): %v", hasIndex, err)
			}
			if _, err := ro.BeginAppend(ctx); !errors.Is(err, infertrail.ErrInvalid) {
				t.Errorf("BeginAppend on a read-only DB: %v, want ErrInvalid", err)
			}
			if err := ro.AddCheckpoint(ctx, infertrail.StoredCheckpoint{Size: 40, Note: []byte("other\n")}); err == nil {
				t.Errorf("AddCheckpoint on a read-only DB: no error")
			}
			if err := ro.Close(); err != nil {
				t.Fatal(err)
			}
			checkUnchanged(t, path, before, dirFiles(t, filepath.Dir(path)))
		})
	}
}

// TestReadOnlyRefuses: a missing file, and a log of an older schema (which
// reading would need migrated), are refused read-only and left as they are.
func TestReadOnlyRefuses(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	if _, err := Open(ctx, filepath.Join(dir, "none.db"), Config{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open read-only of a missing file: %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "none.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open read-only made the missing file: %v", err)
	}
	path := newAlteredLog(t, dir, `DELETE FROM schema_migrations WHERE version = ?`, SchemaVersion())
	before := dirFiles(t, dir)
	if _, err := Open(ctx, path, Config{ReadOnly: true}); !errors.Is(err, ErrSchemaOlder) {
		t.Errorf("Open read-only of an older schema: %v, want ErrSchemaOlder", err)
	}
	checkUnchanged(t, path, before, dirFiles(t, dir))

	// A copy of it, opened as usual, is migrated; the file is not.
	copied := filepath.Join(t.TempDir(), "copy.db")
	if err := Copy(ctx, path, copied); err != nil {
		t.Fatal(err)
	}
	checkUnchanged(t, path, before, dirFiles(t, dir))
	c, err := Open(ctx, copied, Config{})
	if err != nil {
		t.Fatalf("open the copy: %v", err)
	}
	c.Close()
	if c, err = Open(ctx, copied, Config{ReadOnly: true}); err != nil {
		t.Fatalf("open the migrated copy read-only: %v", err)
	}
	c.Close()
	if err := Copy(ctx, path, copied); !errors.Is(err, infertrail.ErrInvalid) {
		t.Errorf("Copy over an existing file: %v, want ErrInvalid", err)
	}
	if err := Copy(ctx, filepath.Join(dir, "none.db"), filepath.Join(t.TempDir(), "x.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Copy of a missing file: %v, want ErrNotExist", err)
	}
}

// TestReadOnlyBesideWriter reads a log that another handle is appending to:
// records still in the WAL are read, and later commits are seen.
func TestReadOnlyBesideWriter(t *testing.T) {
	ctx := t.Context()
	db := openTemp(t)
	defer db.Close()
	entries, blobs := storetest.MakeBatch(0, 30)
	storetest.AppendEntries(t, db, entries[:10], blobs)
	ro, err := Open(ctx, db.Path(), Config{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if n, err := ro.TreeSize(ctx); err != nil || n != 10 {
		t.Fatalf("TreeSize = %d, %v; want 10", n, err)
	}
	storetest.AppendEntries(t, db, entries[10:], blobs)
	if n, err := ro.TreeSize(ctx); err != nil || n != 30 {
		t.Fatalf("TreeSize after more appends = %d, %v; want 30", n, err)
	}
	hs, err := ro.ReadHashes(ctx, []int64{0, 1, 2})
	if err != nil || len(hs) != 3 {
		t.Fatalf("ReadHashes: %v, %v", hs, err)
	}
}

// TestReadOnlyMedium opens logs on a read-only file system (a snapshot, a
// write-once share): a log whose commits are all in its file opens,
// though SQLite cannot make the shared-memory file it would want; a log
// whose WAL still holds commits is refused with what to do, rather than
// read without them.
func TestReadOnlyMedium(t *testing.T) {
	ctx := t.Context()
	disk := testdisk.Mount(t, 64<<20)
	entries, blobs := storetest.MakeBatch(0, 20)

	closed := filepath.Join(disk.Dir, "closed", "log.db")
	if err := os.Mkdir(filepath.Dir(closed), 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, closed, Config{MinFree: -1})
	if err != nil {
		t.Fatal(err)
	}
	storetest.AppendEntries(t, db, entries, blobs)
	db.Close()

	// A log in use, copied with its WAL but not its shared-memory file.
	live := openTemp(t)
	defer live.Close()
	storetest.AppendEntries(t, live, entries, blobs)
	withWAL := filepath.Join(disk.Dir, "wal", "log.db")
	if err := os.Mkdir(filepath.Dir(withWAL), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(live.Path() + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if suffix == "-wal" && len(b) == 0 {
			t.Fatal("the live log's WAL is empty: the test needs commits in it")
		}
		if err := os.WriteFile(withWAL+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	disk.ReadOnly(t)

	before := dirFiles(t, filepath.Dir(closed))
	ro, err := Open(ctx, closed, Config{ReadOnly: true})
	if err != nil {
		t.Fatalf("open a closed log on a read-only medium: %v", err)
	}
	if n, err := ro.TreeSize(ctx); err != nil || n != 20 {
		t.Fatalf("TreeSize = %d, %v; want 20", n, err)
	}
	var n int
	if err := ro.Entries(ctx, 0, 20, func(*infertrail.Entry) error { n++; return nil }); err != nil || n != 20 {
		t.Fatalf("Entries: %d, %v", n, err)
	}
	ro.Close()
	checkUnchanged(t, closed, before, dirFiles(t, filepath.Dir(closed)))

	_, err = Open(ctx, withWAL, Config{ReadOnly: true})
	if err == nil || !strings.Contains(err.Error(), "copy the folder") {
		t.Fatalf("open a log whose WAL holds commits on a read-only medium: %v, want an error saying to copy it", err)
	}
	t.Log(err)
}
