package ledger_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/keys"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/store/sqlite"
)

// tamperBase is a closed log of tamperRecords records, with checkpoints at
// tamperCheckpoints, to alter copies of.
type tamperBase struct {
	path    string
	log     *testLog
	entries []infertrail.Entry
	codec   map[infertrail.BlobID]infertrail.Codec
	roots   map[int64]tlog.Hash // checkpoint roots by size
}

const tamperRecords = 600

var tamperCheckpoints = []int64{150, 300, 450, 600}

// newTamperBase builds the log: every record has an array "messages" whose
// first element, a long system prompt, is one zstd blob shared by all, and
// whose second is a short unique plain blob; every fourth record shares a
// plain "tools" blob; every fifth has a long unique zstd "output".
func newTamperBase(tb testing.TB) *tamperBase {
	tb.Helper()
	ctx := context.Background()
	l := newTestLog(tb, sqlite.Config{}, func(c *ledger.Config) { c.CheckpointInterval = time.Hour })
	sys := `{"role": "system", "content": "` + strings.Repeat("Answer briefly and cite sources. ", 12) + `"}`
	for start := int64(0); start < tamperRecords; start += 50 {
		srcs := make([]string, 50)
		for j := range srcs {
			i := int(start) + j
			content := fmt.Sprintf(`{"messages": [%s, {"role": "user", "content": "question number %d"}]`, sys, i)
			if i%4 == 0 {
				content += `, "tools": [{"name": "search"}]`
			}
			if i%5 == 0 {
				content += fmt.Sprintf(`, "output": "%s"`, strings.Repeat(fmt.Sprintf("answer %d is long. ", i), 20))
			}
			srcs[j] = recordJSON(i, content+"}")
		}
		mustAppend(tb, l.Log, parseAll(tb, srcs))
		if end := start + 50; end < tamperRecords && slices.Contains(tamperCheckpoints, end) {
			if _, err := l.SignCheckpoint(ctx); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil { // signs the final checkpoint
		tb.Fatal(err)
	}
	b := &tamperBase{path: l.path, log: l, codec: map[infertrail.BlobID]infertrail.Codec{}, roots: map[int64]tlog.Hash{}}
	err := l.db.Entries(ctx, 0, tamperRecords, func(e *infertrail.Entry) error {
		b.entries = append(b.entries, e.Clone())
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	for _, cp := range checkCheckpoints(tb, l) {
		b.roots[cp.Size] = cp.Root
	}
	if got := mapsKeysSorted(b.roots); !slices.Equal(got, tamperCheckpoints) {
		tb.Fatalf("checkpoints at %v, want %v", got, tamperCheckpoints)
	}
	if err := l.db.Close(); err != nil {
		tb.Fatal(err)
	}
	rows, err := rawDB(tb, l.path).Query("SELECT id, codec FROM blobs")
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id []byte
		var c infertrail.Codec
		if err := rows.Scan(&id, &c); err != nil {
			tb.Fatal(err)
		}
		var bid infertrail.BlobID
		copy(bid[:], id) // zeros after an id stored cut short
		b.codec[bid] = c
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return b
}

func mapsKeysSorted(m map[int64]tlog.Hash) []int64 {
	var out []int64
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// blob returns the id of blob i of field of record seq, checking its codec.
func (b *tamperBase) blob(tb testing.TB, seq int64, field string, i int, codec infertrail.Codec) infertrail.BlobID {
	tb.Helper()
	for _, r := range b.entries[seq].Content {
		if r.Field == field {
			id := r.Blobs[i]
			if b.codec[id] != codec {
				tb.Fatalf("blob %d of %s of record %d has codec %d, want %d", i, field, seq, b.codec[id], codec)
			}
			return id
		}
	}
	tb.Fatalf("record %d has no content field %s", seq, field)
	return infertrail.BlobID{}
}

// firstUser returns the first record whose field uses blob id.
// firstKeyUser returns the first record whose content is sealed under the
// data key of blob id.
func (b *tamperBase) firstKeyUser(tb testing.TB, id infertrail.BlobID) int64 {
	tb.Helper()
	var key infertrail.KeyID
	for _, e := range b.entries {
		for _, r := range e.Content {
			if slices.Contains(r.Blobs, id) {
				key = r.Key
			}
		}
	}
	for _, e := range b.entries {
		for _, r := range e.Content {
			if r.Key == key {
				return e.Seq
			}
		}
	}
	tb.Fatalf("no record uses blob %x", id[:8])
	return -1
}

func (b *tamperBase) firstUser(tb testing.TB, id infertrail.BlobID, field string) int64 {
	tb.Helper()
	for _, e := range b.entries {
		for _, r := range e.Content {
			if r.Field == field && slices.Contains(r.Blobs, id) {
				return e.Seq
			}
		}
	}
	tb.Fatalf("no record uses blob %x", id[:8])
	return -1
}

// exec runs statements that must each change exactly one row.
func exec(tb testing.TB, db *sql.DB, query string, args ...any) {
	tb.Helper()
	res, err := db.Exec(query, args...)
	if err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		tb.Fatalf("%s: %d rows changed (%v), want 1", query, n, err)
	}
}

// readLeaf returns the leaf of seq as the leaf column stores it (plain, or
// compressed) and in plain.
func readLeaf(tb testing.TB, db *sql.DB, seq int64) (stored, plain []byte) {
	tb.Helper()
	if err := db.QueryRow("SELECT leaf FROM records WHERE seq = ?", seq).Scan(&stored); err != nil {
		tb.Fatal(err)
	}
	return stored, decodeLeaf(tb, stored)
}

func decodeLeaf(tb testing.TB, stored []byte) []byte {
	tb.Helper()
	plain, err := sqlite.DecodeLeafColumn(stored)
	if err != nil {
		tb.Fatal(err)
	}
	return plain
}

// editLeaf replaces the one occurrence of old in the leaf of seq by new.
func editLeaf(tb testing.TB, db *sql.DB, seq int64, old, new string) {
	tb.Helper()
	_, leaf := readLeaf(tb, db, seq)
	if bytes.Count(leaf, []byte(old)) != 1 {
		tb.Fatalf("leaf %d: %q occurs %d times in %s", seq, old, bytes.Count(leaf, []byte(old)), leaf)
	}
	exec(tb, db, "UPDATE records SET leaf = ? WHERE seq = ?", bytes.Replace(leaf, []byte(old), []byte(new), 1), seq)
}

// chunkSize returns the number of stored hashes a hash_chunks row packs.
func chunkSize(tb testing.TB, db *sql.DB) int64 {
	tb.Helper()
	var n int64
	if err := db.QueryRow("SELECT chunk_size FROM log_head").Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// flipHash changes one byte of the stored hash with the given index.
func flipHash(tb testing.TB, db *sql.DB, idx int64) {
	tb.Helper()
	size := chunkSize(tb, db)
	var hashes []byte
	if err := db.QueryRow("SELECT hashes FROM hash_chunks WHERE chunk = ?", idx/size).Scan(&hashes); err != nil {
		tb.Fatal(err)
	}
	hashes[(idx%size)*tlog.HashSize+7] ^= 0x20
	exec(tb, db, "UPDATE hash_chunks SET hashes = ? WHERE chunk = ?", hashes, idx/size)
}

// editBlob changes the stored bytes of blob id with edit.
func editBlob(tb testing.TB, db *sql.DB, id infertrail.BlobID, edit func([]byte) []byte) {
	tb.Helper()
	var data []byte
	if err := db.QueryRow("SELECT data FROM blobs WHERE id = ?", sqlite.StoredBlobID(&id)).Scan(&data); err != nil {
		tb.Fatal(err)
	}
	exec(tb, db, "UPDATE blobs SET data = ? WHERE id = ?", edit(data), sqlite.StoredBlobID(&id))
}

// editPlain decrypts a blob with its data key, edits the plain bytes and
// seals them again, as an insider holding the key-encryption key could.
func editPlain(tb testing.TB, db *sql.DB, kek keys.KEK, id infertrail.BlobID, edit func([]byte) []byte) {
	tb.Helper()
	var data, keyID, wrapped []byte
	if err := db.QueryRow("SELECT b.data, k.id, k.wrapped FROM blobs b JOIN data_keys k ON k.id = substr(b.id, 1, 16) WHERE b.id = ?", sqlite.StoredBlobID(&id)).Scan(&data, &keyID, &wrapped); err != nil {
		tb.Fatal(err)
	}
	dek, err := kek.Unwrap(tb.Context(), wrapped, keyID)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := keys.NewCipher(dek)
	if err != nil {
		tb.Fatal(err)
	}
	plain, err := c.Open(nil, data, id[:])
	if err != nil {
		tb.Fatal(err)
	}
	exec(tb, db, "UPDATE blobs SET data = ? WHERE id = ?", c.Seal(nil, edit(plain), id[:]), sqlite.StoredBlobID(&id))
}

// rehash rewrites every stored hash from the stored leaves, as an attacker
// who rewrites history consistently would.
func rehash(tb testing.TB, db *sql.DB) {
	tb.Helper()
	rows, err := db.Query("SELECT leaf FROM records ORDER BY seq")
	if err != nil {
		tb.Fatal(err)
	}
	var hashes []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	for n := int64(0); rows.Next(); n++ {
		var leaf []byte
		if err := rows.Scan(&leaf); err != nil {
			tb.Fatal(err)
		}
		hs, err := tlog.StoredHashes(n, decodeLeaf(tb, leaf), reader)
		if err != nil {
			tb.Fatal(err)
		}
		hashes = append(hashes, hs...)
	}
	if err := rows.Close(); err != nil {
		tb.Fatal(err)
	}
	if _, err := db.Exec("DELETE FROM hash_chunks"); err != nil {
		tb.Fatal(err)
	}
	size := int(chunkSize(tb, db))
	for k := 0; k*size < len(hashes); k++ {
		var chunk []byte
		for _, h := range hashes[k*size : min(len(hashes), (k+1)*size)] {
			chunk = append(chunk, h[:]...)
		}
		exec(tb, db, "INSERT INTO hash_chunks (chunk, hashes) VALUES (?, ?)", k, chunk)
	}
}

func TestVerifyStoreTampering(t *testing.T) {
	base := newTamperBase(t)
	origin := testOrigin
	otherSigner, _ := testKeys(t)

	// Blobs to alter.
	sharedZstd := base.blob(t, 0, "messages", 0, infertrail.CodecZstdBare)
	uniquePlain := base.blob(t, 200, "messages", 1, infertrail.CodecRaw)
	uniqueZstd := base.blob(t, 205, "output", 0, infertrail.CodecZstdBare)
	sharedPlain := base.blob(t, 40, "tools", 0, infertrail.CodecRaw)
	removed := base.blob(t, 77, "messages", 1, infertrail.CodecRaw)

	flipByte := func(i func(n int) int) func([]byte) []byte {
		return func(b []byte) []byte { b[i(len(b))] ^= 0x01; return b }
	}
	signAt := func(t *testing.T, db *sql.DB, size int64, note []byte) {
		exec(t, db, "UPDATE checkpoints SET note = ? WHERE size = ?", note, size)
	}

	for _, tc := range []struct {
		name  string
		alter func(t *testing.T, db *sql.DB)
		index int64  // the record the error must name, or -1
		what  string // what VerificationError.What must contain
		msg   string // what the error text must contain, if not empty
	}{
		{"leaf string byte", func(t *testing.T, db *sql.DB) {
			editLeaf(t, db, 123, `"source":"test"`, `"source":"tesT"`)
		}, 123, "stored leaf hash", "level 0 index 123"},
		// A byte of the compressed column: the damaged leaf either fails to
		// decode or decodes to a different leaf; either way record 127 is named.
		{"stored leaf byte", func(t *testing.T, db *sql.DB) {
			stored, _ := readLeaf(t, db, 127)
			stored[len(stored)/2] ^= 0x01
			exec(t, db, "UPDATE records SET leaf = ? WHERE seq = 127", stored)
		}, 127, "", ""},
		{"leaf number digit, still canonical", func(t *testing.T, db *sql.DB) {
			editLeaf(t, db, 124, `"gen_ai.usage.input_tokens":1124`, `"gen_ai.usage.input_tokens":1125`)
		}, 124, "stored leaf hash", ""},
		{"leaf sequence number", func(t *testing.T, db *sql.DB) {
			editLeaf(t, db, 125, `"seq":125`, `"seq":126`)
		}, 125, "leaf", "sequence number 126"},
		{"leaf not a record", func(t *testing.T, db *sql.DB) {
			editLeaf(t, db, 126, `"kind":"inference"`, `"kind":"inferenc!"`)
		}, 126, "leaf", ""},
		// Someone holding the key-encryption key re-encrypts altered
		// content: the commitment in the leaf still catches it.
		{"plain blob byte", func(t *testing.T, db *sql.DB) {
			editPlain(t, db, base.log.kek, uniquePlain, func(b []byte) []byte { return bytes.Replace(b, []byte("question"), []byte("Question"), 1) })
		}, 200, "content field messages", "commitment"},
		{"shared plain blob byte", func(t *testing.T, db *sql.DB) {
			editPlain(t, db, base.log.kek, sharedPlain, func(b []byte) []byte { return bytes.Replace(b, []byte("search"), []byte("Search"), 1) })
		}, base.firstUser(t, sharedPlain, "tools"), "content field tools", "commitment"},
		{"ciphertext byte", func(t *testing.T, db *sql.DB) {
			editBlob(t, db, uniquePlain, flipByte(func(n int) int { return n / 2 }))
		}, 200, "content field messages", "authentication"},
		{"blob moved to another id", func(t *testing.T, db *sql.DB) {
			var data []byte
			if err := db.QueryRow("SELECT data FROM blobs WHERE id = ?", sqlite.StoredBlobID(&uniqueZstd)).Scan(&data); err != nil {
				t.Fatal(err)
			}
			exec(t, db, "UPDATE blobs SET data = ?, codec = 2 WHERE id = ?", data, sqlite.StoredBlobID(&uniquePlain))
		}, 200, "content field messages", "authentication"},
		{"data key removed", func(t *testing.T, db *sql.DB) {
			exec(t, db, "DELETE FROM data_keys WHERE id = substr(?, 1, 16)", uniquePlain[:])
		}, base.firstKeyUser(t, uniquePlain), "content field", "no erasure record"},
		{"data key erased without an erasure record", func(t *testing.T, db *sql.DB) {
			exec(t, db, "UPDATE data_keys SET wrapped = NULL, kek = NULL, erased_by = 3 WHERE id = substr(?, 1, 16)", uniquePlain[:])
		}, base.firstKeyUser(t, uniquePlain), "content", "not an erasure record"},
		{"zstd blob byte", func(t *testing.T, db *sql.DB) {
			editBlob(t, db, uniqueZstd, flipByte(func(n int) int { return n / 2 }))
		}, 205, "content field output", ""},
		{"shared zstd blob byte", func(t *testing.T, db *sql.DB) {
			editBlob(t, db, sharedZstd, flipByte(func(n int) int { return n - 5 }))
		}, base.firstUser(t, sharedZstd, "messages"), "content field messages", ""},
		{"blob removed", func(t *testing.T, db *sql.DB) {
			exec(t, db, "DELETE FROM blobs WHERE id = ?", sqlite.StoredBlobID(&removed))
		}, 77, "content field messages", "missing"},
		{"content salt", func(t *testing.T, db *sql.DB) {
			var refs []byte
			if err := db.QueryRow("SELECT content FROM records WHERE seq = 88").Scan(&refs); err != nil {
				t.Fatal(err)
			}
			refs[1+1+1+1+len("messages")] ^= 0x01 // version, count, flags, field length, field, salt
			exec(t, db, "UPDATE records SET content = ? WHERE seq = 88", refs)
		}, 88, "content field messages", ""},
		{"leaf hash", func(t *testing.T, db *sql.DB) {
			flipHash(t, db, tlog.StoredHashIndex(0, 321))
		}, 321, "stored leaf hash", ""},
		{"interior hash", func(t *testing.T, db *sql.DB) {
			flipHash(t, db, tlog.StoredHashIndex(2, 40)) // records 160 to 163
		}, 163, "stored hash", "level 2 index 40"},
		{"column tenant", func(t *testing.T, db *sql.DB) {
			exec(t, db, "UPDATE records SET tenant = 'other' WHERE seq = 50")
		}, 50, "column tenant", ""},
		{"column kind", func(t *testing.T, db *sql.DB) {
			exec(t, db, "UPDATE records SET kind = 'tool_call' WHERE seq = 51")
		}, 51, "column kind", ""},
		{"column session_id", func(t *testing.T, db *sql.DB) {
			exec(t, db, "UPDATE records SET session_id = 'sess-x' WHERE seq = 52")
		}, 52, "column session_id", ""},
		{"column id", func(t *testing.T, db *sql.DB) {
			exec(t, db, "UPDATE records SET id = ? WHERE seq = 53", infertrail.NewUUID().String()[:16])
		}, 53, "column id", ""},
		{"middle record deleted", func(t *testing.T, db *sql.DB) {
			exec(t, db, "DELETE FROM records WHERE seq = 300")
		}, 300, "record", "missing"},
		// The tree size is the records' count: the checkpoint that covers
		// the last record names its removal.
		{"last record deleted", func(t *testing.T, db *sql.DB) {
			exec(t, db, "DELETE FROM records WHERE seq = ?", tamperRecords-1)
		}, tamperRecords - 1, "checkpoint of size 600", "truncated"},
		{"leaves swapped", func(t *testing.T, db *sql.DB) {
			a, _ := readLeaf(t, db, 10)
			b, _ := readLeaf(t, db, 20)
			exec(t, db, "UPDATE records SET leaf = ? WHERE seq = 10", b)
			exec(t, db, "UPDATE records SET leaf = ? WHERE seq = 20", a)
		}, 10, "leaf", "swapped"},
		{"truncated", func(t *testing.T, db *sql.DB) {
			const keep = tamperRecords - 100
			if _, err := db.Exec("DELETE FROM records WHERE seq >= ?", keep); err != nil {
				t.Fatal(err)
			}
			n, size := tlog.StoredHashCount(keep), chunkSize(t, db)
			if _, err := db.Exec("DELETE FROM hash_chunks WHERE chunk > ?", (n-1)/size); err != nil {
				t.Fatal(err)
			}
			exec(t, db, "UPDATE hash_chunks SET hashes = substr(hashes, 1, ?) WHERE chunk = ?", (n-(n-1)/size*size)*tlog.HashSize, (n-1)/size)
		}, tamperRecords - 100, "checkpoint of size 600", "truncated"},
		{"history rewritten with consistent hashes", func(t *testing.T, db *sql.DB) {
			editLeaf(t, db, 400, `"gen_ai.usage.input_tokens":1400`, `"gen_ai.usage.input_tokens":1401`)
			rehash(t, db)
		}, -1, "checkpoint of size 450", "signed root"},
		{"checkpoint signed by another key", func(t *testing.T, db *sql.DB) {
			cp, err := ledger.SignCheckpoint(otherSigner, origin, 300, base.roots[300])
			if err != nil {
				t.Fatal(err)
			}
			signAt(t, db, 300, cp.Note)
		}, -1, "checkpoint of size 300", ""},
		{"checkpoint of another root signed with the log's key", func(t *testing.T, db *sql.DB) {
			root := base.roots[300]
			root[0] ^= 1
			cp, err := ledger.SignCheckpoint(base.log.signer, origin, 300, root)
			if err != nil {
				t.Fatal(err)
			}
			signAt(t, db, 300, cp.Note)
		}, -1, "checkpoint of size 300", "signed root"},
		{"checkpoint of another size signed with the log's key", func(t *testing.T, db *sql.DB) {
			cp, err := ledger.SignCheckpoint(base.log.signer, origin, 299, base.roots[300])
			if err != nil {
				t.Fatal(err)
			}
			signAt(t, db, 300, cp.Note)
		}, -1, "checkpoint stored as size 300", "299"},
		{"checkpoint note byte", func(t *testing.T, db *sql.DB) {
			var note []byte
			if err := db.QueryRow("SELECT note FROM checkpoints WHERE size = 450").Scan(&note); err != nil {
				t.Fatal(err)
			}
			note[len(testOrigin)+3] ^= 0x01 // in the base64 root
			signAt(t, db, 450, note)
		}, -1, "checkpoint of size 450", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := copyDB(t, base.path)
			db := rawDB(t, path)
			tc.alter(t, db)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			st := openStore(t, path, sqlite.Config{})
			_, err := ledger.VerifyStore(t.Context(), st, testOrigin, base.log.verif, base.log.kek, nil)
			ve := wantVerificationError(t, err, tc.index, tc.what)
			if !strings.Contains(ve.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", ve, tc.msg)
			}
			t.Log(ve)
		})
	}

	t.Run("untouched", func(t *testing.T) {
		st := openStore(t, copyDB(t, base.path), sqlite.Config{})
		var progress [][2]int64
		rep, err := ledger.VerifyStore(t.Context(), st, testOrigin, base.log.verif, base.log.kek, func(done, total int64) {
			progress = append(progress, [2]int64{done, total})
		})
		if err != nil {
			t.Fatal(err)
		}
		want := ledger.Report{Records: tamperRecords, Checkpoints: len(tamperCheckpoints), Root: base.roots[tamperRecords],
			Latest: tamperRecords, Unsigned: 0, ErasedBy: map[int64]int64{}}
		if !reflect.DeepEqual(rep, want) {
			t.Errorf("report %+v, want %+v", rep, want)
		}
		if len(progress) == 0 || progress[len(progress)-1] != [2]int64{tamperRecords, tamperRecords} {
			t.Errorf("progress calls %v, want the last one to be %d of %d", progress, tamperRecords, tamperRecords)
		}
	})
	t.Run("wrong verifier", func(t *testing.T) {
		st := openStore(t, copyDB(t, base.path), sqlite.Config{})
		_, other := testKeys(t)
		_, err := ledger.VerifyStore(t.Context(), st, testOrigin, other, base.log.kek, nil)
		wantVerificationError(t, err, -1, "checkpoint of size 150")
	})
	t.Run("cancelled", func(t *testing.T) {
		st := openStore(t, copyDB(t, base.path), sqlite.Config{})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := ledger.VerifyStore(ctx, st, testOrigin, base.log.verif, base.log.kek, nil)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	})
}

func TestVerifyStoreReport(t *testing.T) {
	ctx := t.Context()
	l := newTestLog(t, sqlite.Config{}, func(c *ledger.Config) { c.CheckpointInterval = time.Hour })

	rep, err := ledger.VerifyStore(ctx, l.db, testOrigin, l.verif, l.kek, nil)
	if err != nil || !reflect.DeepEqual(rep, ledger.Report{ErasedBy: map[int64]int64{}}) {
		t.Fatalf("empty log: report %+v, %v", rep, err)
	}

	var srcs []string
	for i := range 4200 { // more than one verification step of 4096 records
		srcs = append(srcs, recordJSON(i, ""))
	}
	mustAppend(t, l.Log, parseAll(t, srcs[:4100]))
	cp, err := l.SignCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l.Log, parseAll(t, srcs[4100:]))

	var progress [][2]int64
	rep, err = ledger.VerifyStore(ctx, l.db, testOrigin, l.verif, l.kek, func(done, total int64) {
		progress = append(progress, [2]int64{done, total})
	})
	if err != nil {
		t.Fatal(err)
	}
	root, err := l.TreeHash(ctx, 4200)
	if err != nil {
		t.Fatal(err)
	}
	want := ledger.Report{Records: 4200, Checkpoints: 1, Root: root, Latest: cp.Size, Unsigned: 4200 - cp.Size, ErasedBy: map[int64]int64{}}
	if cp.Size != 4100 || !reflect.DeepEqual(rep, want) {
		t.Errorf("report %+v, want %+v", rep, want)
	}
	if !slices.Equal(progress, [][2]int64{{4096, 4200}, {4200, 4200}}) {
		t.Errorf("progress calls %v", progress)
	}
}
