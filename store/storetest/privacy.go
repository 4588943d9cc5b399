package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/infertrail/infertrail"
)

// privacyTests are Run's subtests of data keys, erasure and holds.
var privacyTests = []struct {
	name string
	fn   func(t *testing.T, s infertrail.Store)
}{
	{"KeysAddAndRead", testKeysAddAndRead},
	{"KeysReadMany", testKeysReadMany},
	{"KeysScan", testKeysScan},
	{"Erase", testErase},
	{"EraseRolledBack", testEraseRolledBack},
	{"Rewrap", testRewrap},
	{"Holds", testHolds},
}

// addKeys stores keys in a transaction of their own.
func addKeys(t *testing.T, s infertrail.Store, keys ...infertrail.DataKey) {
	t.Helper()
	tx, err := s.BeginAppend(t.Context())
	if err != nil {
		t.Fatalf("BeginAppend: %v", err)
	}
	defer tx.Rollback()
	if err := tx.AddKeys(t.Context(), keys); err != nil {
		t.Fatalf("AddKeys: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func sameKey(a, b infertrail.DataKey) bool {
	return a.ID == b.ID && a.Tenant == b.Tenant && a.Scope == b.Scope && a.Kind == b.Kind && a.Period == b.Period &&
		a.Created == b.Created && a.KEK == b.KEK && bytes.Equal(a.Wrapped, b.Wrapped) && a.ErasedBy == b.ErasedBy
}

// testKeysReadMany reads more keys than one query of a store may ask for,
// with repeats and ids that are not stored, in no particular order.
func testKeysReadMany(t *testing.T, s infertrail.Store) {
	var stored []infertrail.DataKey
	var ids []infertrail.KeyID
	for i := range 300 {
		k := TestKey("acme", fmt.Sprintf("many-%d", i))
		if i%3 != 0 {
			stored = append(stored, k)
		}
		ids = append(ids, k.ID)
		if i%7 == 0 {
			ids = append(ids, ids[i/2])
		}
	}
	addKeys(t, s, stored...)
	got, err := s.DataKeys(t.Context(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(stored) {
		t.Errorf("DataKeys returned %d keys, want %d", len(got), len(stored))
	}
	for _, k := range stored {
		if !sameKey(got[k.ID], k) {
			t.Errorf("DataKeys[%x] = %+v, want %+v", k.ID[:4], got[k.ID], k)
		}
	}
	// Every seventh key in id order: most keys stored between the first
	// and the last are not asked for.
	slices.SortFunc(stored, func(a, b infertrail.DataKey) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	var sparse []infertrail.KeyID
	for i := 0; i < len(stored); i += 7 {
		sparse = append(sparse, stored[i].ID)
	}
	got, err = s.DataKeys(t.Context(), sparse)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(sparse) {
		t.Errorf("a sparse read returned %d keys, want %d", len(got), len(sparse))
	}
	for _, id := range sparse {
		if got[id].ID != id {
			t.Errorf("a sparse read did not return key %x", id[:4])
		}
	}
}

func testKeysAddAndRead(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	k1, k2 := TestKey("acme", "s1"), TestKey("tenant-ü✓", "s=2,x")
	addKeys(t, s, k1, k2)
	// A second copy of a stored id is skipped: the first stays.
	dup := k1
	dup.Wrapped = []byte("other")
	addKeys(t, s, dup)
	got, err := s.DataKeys(ctx, []infertrail.KeyID{k1.ID, k2.ID, {9}, k1.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !sameKey(got[k1.ID], k1) || !sameKey(got[k2.ID], k2) {
		t.Errorf("DataKeys = %+v, want %+v and %+v", got, k1, k2)
	}
	// Inside a transaction, Keys sees the transaction's own writes.
	tx, err := s.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	k3 := TestKey("acme", "s3")
	if err := tx.AddKeys(ctx, []infertrail.DataKey{k3}); err != nil {
		t.Fatal(err)
	}
	in, err := tx.Keys(ctx, infertrail.KeyFilter{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != 2 {
		t.Errorf("Keys in tx = %d keys, want 2 (one committed, one added in the tx)", len(in))
	}
	if err := tx.AddKeys(ctx, []infertrail.DataKey{{Tenant: "acme"}}); !errors.Is(err, infertrail.ErrInvalid) {
		t.Errorf("AddKeys of a key with no id: err = %v, want ErrInvalid", err)
	}
}

func testKeysScan(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	var keys []infertrail.DataKey
	for i := range 12 {
		k := TestKey([]string{"acme", "beta"}[i%2], fmt.Sprintf("s%d", i))
		k.Kind = []infertrail.Kind{infertrail.KindInference, infertrail.KindToolCall}[i%3%2]
		k.Period += int64(i/4) * 86400
		if i == 5 {
			k.KEK = "kek-new"
		}
		keys = append(keys, k)
	}
	addKeys(t, s, keys...)
	scan := func(f infertrail.KeyFilter, after infertrail.KeyID) []infertrail.KeyID {
		t.Helper()
		var out []infertrail.KeyID
		if err := s.ScanKeys(ctx, f, after, func(k *infertrail.DataKey) error {
			out = append(out, k.ID)
			return nil
		}); err != nil {
			t.Fatalf("ScanKeys(%+v): %v", f, err)
		}
		return out
	}
	want := func(keep func(i int, k infertrail.DataKey) bool) []infertrail.KeyID {
		var out []infertrail.KeyID
		for i, k := range keys {
			if keep(i, k) {
				out = append(out, k.ID)
			}
		}
		slices.SortFunc(out, func(a, b infertrail.KeyID) int { return bytes.Compare(a[:], b[:]) })
		return out
	}
	base := keys[0].Period
	sorted := slices.Clone(keys)
	slices.SortFunc(sorted, func(a, b infertrail.DataKey) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	mid := sorted[len(sorted)/2].ID
	for _, tc := range []struct {
		name string
		f    infertrail.KeyFilter
		keep func(i int, k infertrail.DataKey) bool
	}{
		{"all", infertrail.KeyFilter{}, func(int, infertrail.DataKey) bool { return true }},
		{"tenant", infertrail.KeyFilter{Tenant: "beta"}, func(_ int, k infertrail.DataKey) bool { return k.Tenant == "beta" }},
		{"kind", infertrail.KeyFilter{Kind: infertrail.KindToolCall}, func(_ int, k infertrail.DataKey) bool { return k.Kind == infertrail.KindToolCall }},
		{"period", infertrail.KeyFilter{PeriodBefore: base + 86400}, func(i int, _ infertrail.DataKey) bool { return i < 4 }},
		{"prefix", infertrail.KeyFilter{ScopePrefix: "tenant=acme,session=s1"}, func(i int, _ infertrail.DataKey) bool { return i == 10 }},
		{"prefix-tenant", infertrail.KeyFilter{ScopePrefix: "tenant=acme,"}, func(_ int, k infertrail.DataKey) bool { return k.Tenant == "acme" }},
		{"not-kek", infertrail.KeyFilter{NotKEK: "kek-test"}, func(i int, _ infertrail.DataKey) bool { return i == 5 }},
		{"id-from", infertrail.KeyFilter{Tenant: "acme", IDFrom: mid}, func(_ int, k infertrail.DataKey) bool {
			return k.Tenant == "acme" && bytes.Compare(k.ID[:], mid[:]) >= 0
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, w := scan(tc.f, infertrail.KeyID{}), want(tc.keep)
			if !slices.Equal(got, w) {
				t.Errorf("ScanKeys(%+v) = %x, want %x", tc.f, got, w)
			}
		})
	}
	// Paging: after the first id, the rest.
	all := want(func(int, infertrail.DataKey) bool { return true })
	if got := scan(infertrail.KeyFilter{}, all[0]); !slices.Equal(got, all[1:]) {
		t.Errorf("ScanKeys after %x = %x, want %x", all[0], got, all[1:])
	}
	errStop := errors.New("stop")
	if err := s.ScanKeys(ctx, infertrail.KeyFilter{}, infertrail.KeyID{}, func(*infertrail.DataKey) error { return errStop }); !errors.Is(err, errStop) {
		t.Errorf("ScanKeys returned %v, want fn's error", err)
	}
}

// encryptedEntries appends count entries of MakeEntry's sequence and the
// keys their blobs use, and returns them.
func encryptedEntries(t *testing.T, s infertrail.Store, count int) ([]infertrail.Entry, []infertrail.Blob, map[infertrail.KeyID]infertrail.DataKey) {
	t.Helper()
	entries, blobs := MakeBatch(0, count)
	keys := map[infertrail.KeyID]infertrail.DataKey{}
	for _, e := range entries {
		for _, r := range e.Content {
			if !r.Key.IsZero() {
				keys[r.Key] = TestKey(e.Tenant, e.SessionID)
			}
		}
	}
	tx, err := s.BeginAppend(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var ks []infertrail.DataKey
	for _, k := range keys {
		ks = append(ks, k)
	}
	if err := tx.AddKeys(t.Context(), ks); err != nil {
		t.Fatal(err)
	}
	if err := NewSequencer(tx).Append(t.Context(), entries, blobs); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return entries, blobs, keys
}

func blobIDs(blobs []infertrail.Blob, keep func(infertrail.Blob) bool) []infertrail.BlobID {
	var out []infertrail.BlobID
	for _, b := range blobs {
		if keep(b) {
			out = append(out, b.ID)
		}
	}
	return out
}

func testErase(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	entries, blobs, keys := encryptedEntries(t, s, 60)
	var victim infertrail.KeyID
	for _, b := range blobs {
		if !b.Key.IsZero() {
			victim = b.Key
			break
		}
	}
	if victim.IsZero() || len(keys) < 3 {
		t.Fatalf("test data has %d keys", len(keys))
	}
	// Blobs keep their key.
	got, err := s.Blobs(ctx, blobIDs(blobs, func(infertrail.Blob) bool { return true }))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		if g := got[b.ID]; g.Key != b.Key {
			t.Fatalf("blob %x: key %x, want %x", b.ID[:4], g.Key[:4], b.Key[:4])
		}
	}

	tx, err := s.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	before := tx.Erasures()
	if _, err := tx.Erase(ctx, []infertrail.KeyID{victim}, int64(len(entries))); !errors.Is(err, infertrail.ErrInvalid) {
		t.Errorf("Erase by a record past the log: err = %v, want ErrInvalid", err)
	}
	tx.Rollback()
	// The erasure record, then the erasure, in one transaction.
	tx, err = s.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	rec, _ := MakeEntry(1000)
	rec.Content = nil
	if err := NewSequencer(tx).Append(ctx, []infertrail.Entry{rec}, nil); err != nil {
		t.Fatal(err)
	}
	n, err := tx.Erase(ctx, []infertrail.KeyID{victim, {7}}, rec.Seq)
	if err != nil {
		t.Fatalf("Erase: %v", err)
	}
	victimBlobs := blobIDs(blobs, func(b infertrail.Blob) bool { return b.Key == victim })
	if n != int64(len(dedup(victimBlobs))) {
		t.Errorf("Erase deleted %d blobs, want %d", n, len(dedup(victimBlobs)))
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	ks, err := s.DataKeys(ctx, []infertrail.KeyID{victim})
	if err != nil {
		t.Fatal(err)
	}
	if k := ks[victim]; k.Wrapped != nil || k.KEK != "" || k.ErasedBy != rec.Seq || k.Live() {
		t.Errorf("erased key = %+v, want no wrapped key, no KEK, ErasedBy %d", k, rec.Seq)
	}
	got, err = s.Blobs(ctx, blobIDs(blobs, func(infertrail.Blob) bool { return true }))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		_, present := got[b.ID]
		if want := b.Key != victim; present != want {
			t.Errorf("blob %x (key %x): present %v after erasing key %x", b.ID[:4], b.Key[:4], present, victim[:4])
		}
	}
	for id, k := range keys {
		if id == victim {
			continue
		}
		left, err := s.DataKeys(ctx, []infertrail.KeyID{id})
		if err != nil || !sameKey(left[id], k) {
			t.Errorf("key %x after erasing another = %+v, %v; want unchanged", id[:4], left[id], err)
		}
	}
	// Entries and the tree are untouched: erasure never removes a leaf.
	if got := collect(t, s, 0, int64(len(entries))+1); len(got) != len(entries)+1 {
		t.Errorf("%d entries after erasure, want %d", len(got), len(entries)+1)
	}
	// Live scans skip the erased key; the counter moved on.
	var live int
	s.ScanKeys(ctx, infertrail.KeyFilter{Live: true}, infertrail.KeyID{}, func(*infertrail.DataKey) error { live++; return nil })
	if live != len(keys)-1 {
		t.Errorf("%d live keys, want %d", live, len(keys)-1)
	}
	tx, err = s.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if got := tx.Erasures(); got != before+1 {
		t.Errorf("Erasures = %d after one erasure, want %d", got, before+1)
	}
	// Erasing again changes nothing.
	if n, err := tx.Erase(ctx, []infertrail.KeyID{victim}, 0); err != nil || n != 0 {
		t.Errorf("second Erase = %d, %v; want 0, nil", n, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if ks, _ := s.DataKeys(ctx, []infertrail.KeyID{victim}); ks[victim].ErasedBy != rec.Seq {
		t.Errorf("second Erase changed ErasedBy to %d", ks[victim].ErasedBy)
	}
}

func dedup(ids []infertrail.BlobID) []infertrail.BlobID {
	seen := map[infertrail.BlobID]bool{}
	var out []infertrail.BlobID
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

func testEraseRolledBack(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	_, blobs, keys := encryptedEntries(t, s, 20)
	ids := make([]infertrail.KeyID, 0, len(keys))
	for id := range keys {
		ids = append(ids, id)
	}
	tx, err := s.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Erase(ctx, ids, 0); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	got, err := s.DataKeys(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for id, k := range keys {
		if !sameKey(got[id], k) {
			t.Errorf("key %x after a rolled-back erasure = %+v, want %+v", id[:4], got[id], k)
		}
	}
	all := dedup(blobIDs(blobs, func(infertrail.Blob) bool { return true }))
	if bs, err := s.Blobs(ctx, all); err != nil || len(bs) != len(all) {
		t.Errorf("%d of %d blobs after a rolled-back erasure (%v)", len(bs), len(all), err)
	}
}

func testRewrap(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	k := TestKey("acme", "s1")
	addKeys(t, s, k)
	if ok, err := s.RewrapKey(ctx, k.ID, []byte("stale"), []byte("new"), "kek-2"); err != nil || ok {
		t.Errorf("RewrapKey with a stale old form = %v, %v; want false, nil", ok, err)
	}
	if ok, err := s.RewrapKey(ctx, k.ID, k.Wrapped, []byte("new"), "kek-2"); err != nil || !ok {
		t.Fatalf("RewrapKey = %v, %v; want true, nil", ok, err)
	}
	got, _ := s.DataKeys(ctx, []infertrail.KeyID{k.ID})
	if g := got[k.ID]; string(g.Wrapped) != "new" || g.KEK != "kek-2" {
		t.Errorf("after RewrapKey: wrapped %q by %q, want \"new\" by kek-2", g.Wrapped, g.KEK)
	}
	if ok, err := s.RewrapKey(ctx, infertrail.KeyID{3}, nil, []byte("x"), "kek-2"); err != nil || ok {
		t.Errorf("RewrapKey of a missing key = %v, %v; want false, nil", ok, err)
	}
}

func testHolds(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	hold := func(n int, tenant, scope string) infertrail.Hold {
		var id infertrail.UUID
		id[0], id[15] = byte(n), 1
		return infertrail.Hold{ID: id, Tenant: tenant, Scope: infertrail.Scope(scope), Reason: fmt.Sprintf("case %d", n),
			CreatedBy: "token:legal", Created: int64(1000 + n)}
	}
	h1, h2, h3 := hold(1, "acme", "tenant=acme"), hold(2, "acme", "tenant=acme,session=s1"), hold(3, "beta", "tenant=beta")
	for _, h := range []infertrail.Hold{h1, h2, h3} {
		if err := s.AddHold(ctx, h); err != nil {
			t.Fatalf("AddHold: %v", err)
		}
	}
	for _, bad := range []infertrail.Hold{
		{Tenant: "acme", Scope: "tenant=acme", Reason: "x"},
		func() infertrail.Hold { h := hold(4, "acme", "tenant=beta"); return h }(),
		func() infertrail.Hold { h := hold(5, "acme", "tenant=acme"); h.Reason = ""; return h }(),
	} {
		if err := s.AddHold(ctx, bad); !errors.Is(err, infertrail.ErrInvalid) {
			t.Errorf("AddHold(%+v): err = %v, want ErrInvalid", bad, err)
		}
	}
	ids := func(hs []infertrail.Hold) []string {
		var out []string
		for _, h := range hs {
			out = append(out, h.Reason)
		}
		return out
	}
	if hs, err := s.Holds(ctx, "acme", true); err != nil || !slices.Equal(ids(hs), []string{"case 1", "case 2"}) {
		t.Errorf("Holds(acme) = %v, %v", ids(hs), err)
	}
	if hs, err := s.Holds(ctx, "", true); err != nil || len(hs) != 3 {
		t.Errorf("Holds(all) = %v, %v", ids(hs), err)
	}
	if err := s.ReleaseHold(ctx, "beta", h1.ID, "token:legal", 2000); !errors.Is(err, infertrail.ErrNotFound) {
		t.Errorf("ReleaseHold from another tenant: err = %v, want ErrNotFound", err)
	}
	if err := s.ReleaseHold(ctx, "acme", h1.ID, "token:legal", 2000); err != nil {
		t.Fatalf("ReleaseHold: %v", err)
	}
	if err := s.ReleaseHold(ctx, "acme", h1.ID, "token:legal", 2001); !errors.Is(err, infertrail.ErrNotFound) {
		t.Errorf("second ReleaseHold: err = %v, want ErrNotFound", err)
	}
	if hs, _ := s.Holds(ctx, "acme", true); !slices.Equal(ids(hs), []string{"case 2"}) {
		t.Errorf("active holds after release = %v, want [case 2]", ids(hs))
	}
	all, _ := s.Holds(ctx, "acme", false)
	if len(all) != 2 || all[0].Released != 2000 || all[0].ReleasedBy != "token:legal" || all[0].Scope != h1.Scope || all[0].CreatedBy != h1.CreatedBy || all[0].Created != h1.Created {
		t.Errorf("Holds(acme, all) = %+v", all)
	}
	tx, err := s.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if hs, err := tx.Holds(ctx, "acme"); err != nil || !slices.Equal(ids(hs), []string{"case 2"}) {
		t.Errorf("tx.Holds(acme) = %v, %v; want [case 2]", ids(hs), err)
	}
}
