package infertrail_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
)

func TestParseUUID(t *testing.T) {
	tests := []struct {
		in, want string // want "" for an error
	}{
		{"0193a5b0-7c1e-7000-8000-000000000001", "0193a5b0-7c1e-7000-8000-000000000001"},
		{"0193A5B0-7C1E-7000-8000-00000000000A", "0193a5b0-7c1e-7000-8000-00000000000a"},
		{"ffffffff-ffff-ffff-ffff-ffffffffffff", "ffffffff-ffff-ffff-ffff-ffffffffffff"},
		{"00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000001"},
		{"00000000-0000-0000-0000-000000000000", ""},
		{"", ""},
		{"0193a5b0-7c1e-7000-8000-00000000000", ""},
		{"0193a5b0-7c1e-7000-8000-0000000000011", ""},
		{"0193a5b07c1e70008000000000000001", ""},
		{"{0193a5b0-7c1e-7000-8000-000000000001}", ""},
		{"urn:uuid:0193a5b0-7c1e-7000-8000-000000000001", ""},
		{"0193a5b0_7c1e_7000_8000_000000000001", ""},
		{"0193a5b0-7c1e-7000-8000-00000000000g", ""},
		{"0193a5b0-7c1e-7000-8000+000000000001", ""},
		{"0193a5b-07c1e-7000-8000-000000000001", ""},
		{" 193a5b0-7c1e-7000-8000-000000000001", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := infertrail.ParseUUID(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("ParseUUID(%q) = %v, want an error", tt.in, u)
				}
				if !errors.Is(err, infertrail.ErrInvalid) {
					t.Errorf("error %v does not wrap ErrInvalid", err)
				}
				if !u.IsZero() {
					t.Errorf("ParseUUID returned %v with an error", u)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseUUID(%q): %v", tt.in, err)
			}
			if u.String() != tt.want {
				t.Errorf("String() = %s, want %s", u, tt.want)
			}
			text, err := u.MarshalText()
			if err != nil || string(text) != tt.want {
				t.Errorf("MarshalText = %s, %v", text, err)
			}
			var v infertrail.UUID
			if err := v.UnmarshalText([]byte(tt.in)); err != nil || v != u {
				t.Errorf("UnmarshalText = %v, %v", v, err)
			}
			back, err := infertrail.ParseUUID(u.String())
			if err != nil || back != u {
				t.Errorf("ParseUUID(String()) = %v, %v", back, err)
			}
		})
	}
	var u infertrail.UUID
	if !u.IsZero() || u.String() != "00000000-0000-0000-0000-000000000000" {
		t.Errorf("zero UUID: IsZero %v, String %s", u.IsZero(), u)
	}
	if err := u.UnmarshalText([]byte("nope")); err == nil || !u.IsZero() {
		t.Errorf("UnmarshalText(nope) = %v, left %v", err, u)
	}
}

func TestUUIDJSON(t *testing.T) {
	type doc struct {
		ID infertrail.UUID `json:"id"`
	}
	in := doc{ID: infertrail.NewUUID()}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"` + in.ID.String() + `"}`; string(b) != want {
		t.Errorf("json.Marshal = %s, want %s", b, want)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Errorf("json.Unmarshal = %v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`{"id":"00000000-0000-0000-0000-000000000000"}`), &out); err == nil {
		t.Error("json.Unmarshal accepted the nil UUID")
	}
}

func checkV7(tb testing.TB, u infertrail.UUID) {
	tb.Helper()
	if v := u[6] >> 4; v != 7 {
		tb.Fatalf("%s: version %d, want 7", u, v)
	}
	if u[8]>>6 != 0b10 {
		tb.Fatalf("%s: variant bits %02b, want 10", u, u[8]>>6)
	}
}

func TestNewUUID(t *testing.T) {
	before := time.Now().UnixMilli()
	const n = 100000
	ids := make([]infertrail.UUID, n)
	for i := range ids {
		ids[i] = infertrail.NewUUID()
	}
	after := time.Now().UnixMilli()
	for i, u := range ids {
		checkV7(t, u)
		if i > 0 && bytes.Compare(ids[i-1][:], u[:]) >= 0 {
			t.Fatalf("ids %d and %d not strictly increasing: %s, %s", i-1, i, ids[i-1], u)
		}
		if i > 0 && ids[i-1].String() >= u.String() {
			t.Fatalf("ids %d and %d not increasing as strings", i-1, i)
		}
	}
	// The timestamp is Unix milliseconds; the counter may run it ahead of the
	// clock a little when ids are drawn faster than one per 4096th of a ms.
	first := int64(ids[0][0])<<40 | int64(ids[0][1])<<32 | int64(ids[0][2])<<24 | int64(ids[0][3])<<16 | int64(ids[0][4])<<8 | int64(ids[0][5])
	if first < before || first > after+n/4096+1 {
		t.Errorf("timestamp %d outside [%d, %d]", first, before, after)
	}
	if back, err := infertrail.ParseUUID(ids[0].String()); err != nil || back != ids[0] {
		t.Errorf("ParseUUID(NewUUID().String()) = %v, %v", back, err)
	}
}

func TestNewUUIDConcurrent(t *testing.T) {
	const goroutines, each = 8, 20000
	var wg sync.WaitGroup
	out := make([][]infertrail.UUID, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			ids := make([]infertrail.UUID, each)
			for i := range ids {
				ids[i] = infertrail.NewUUID()
			}
			out[g] = ids
		})
	}
	wg.Wait()
	seen := make(map[infertrail.UUID]bool, goroutines*each)
	for _, ids := range out {
		for i, u := range ids {
			checkV7(t, u)
			if seen[u] {
				t.Fatalf("duplicate id %s", u)
			}
			seen[u] = true
			if i > 0 && bytes.Compare(ids[i-1][:], u[:]) >= 0 {
				t.Fatalf("ids of one goroutine not increasing: %s, %s", ids[i-1], u)
			}
		}
	}
}

func TestKindValid(t *testing.T) {
	if len(infertrail.Kinds) != 9 {
		t.Errorf("len(Kinds) = %d", len(infertrail.Kinds))
	}
	for _, k := range infertrail.Kinds {
		if !k.Valid() {
			t.Errorf("%q.Valid() = false", k)
		}
		if _, _, err := infertrail.ParseRecord([]byte(`{"kind":"`+string(k)+`"}`), infertrail.Limits{}); err != nil {
			t.Errorf("ParseRecord of kind %q: %v", k, err)
		}
	}
	for _, k := range []infertrail.Kind{"", "Inference", "INFERENCE", "inference ", "llm", "tool-call", "policy"} {
		if k.Valid() {
			t.Errorf("%q.Valid() = true", k)
		}
	}
	if slices.ContainsFunc(infertrail.Kinds, func(k infertrail.Kind) bool { return strings.ToLower(string(k)) != string(k) }) {
		t.Error("a kind is not lower case")
	}
}

func sampleRefs() []infertrail.ContentRef {
	var salt [infertrail.SaltSize]byte
	for i := range salt {
		salt[i] = byte(i + 1)
	}
	var a, b infertrail.BlobID
	for i := range a {
		a[i], b[i] = byte(i), byte(255-i)
	}
	return []infertrail.ContentRef{
		{Field: "gen_ai.input.messages", Salt: salt, Array: true, Blobs: []infertrail.BlobID{a, b, a}},
		{Field: "gen_ai.output.messages", Salt: salt, Key: infertrail.KeyID{9, 8, 7}, Blobs: []infertrail.BlobID{b}},
		{Field: "tool.arguments", Salt: salt, Omitted: true},
		{Field: "", Blobs: []infertrail.BlobID{}},
		{Field: strings.Repeat("é", 200), Array: true, Blobs: []infertrail.BlobID{}},
	}
}

func TestContentRefsRoundTrip(t *testing.T) {
	if b := infertrail.MarshalContentRefs(nil); b != nil {
		t.Errorf("MarshalContentRefs(nil) = %x", b)
	}
	if refs, err := infertrail.UnmarshalContentRefs(nil); err != nil || refs != nil {
		t.Errorf("UnmarshalContentRefs(nil) = %v, %v", refs, err)
	}
	refs := sampleRefs()
	b := infertrail.MarshalContentRefs(refs)
	if b[0] != 5 {
		t.Errorf("version byte %d", b[0])
	}
	// Version 3 (every key and field name stored) still decodes, and so
	// does version 2 (blob ids always whole).
	v3 := infertrail.MarshalContentRefsV3(refs)
	if got, err := infertrail.UnmarshalContentRefs(v3); err != nil || !refsEqual(refs, got) {
		t.Errorf("version 3 refs = %+v, %v", got, err)
	}
	v2 := append([]byte{2}, v3[1:]...)
	if got, err := infertrail.UnmarshalContentRefs(v2); err != nil || !refsEqual(refs, got) {
		t.Errorf("version 2 refs = %+v, %v", got, err)
	}
	// Version 1 (no data key) still decodes.
	v1 := append(append([]byte{1, 1, 1, 'f'}, make([]byte, infertrail.SaltSize)...), 0, 0)
	if got, err := infertrail.UnmarshalContentRefs(v1); err != nil || len(got) != 1 || got[0].Field != "f" || !got[0].Key.IsZero() {
		t.Errorf("version 1 refs = %+v, %v", got, err)
	}
	back, err := infertrail.UnmarshalContentRefs(b)
	if err != nil {
		t.Fatal(err)
	}
	if !refsEqual(refs, back) {
		t.Errorf("round trip:\n%+v\n%+v", refs, back)
	}
	// Every truncation and every appended byte is refused.
	for i := range len(b) {
		if got, err := infertrail.UnmarshalContentRefs(b[:i]); i > 0 && err == nil {
			t.Errorf("truncated to %d bytes: accepted %+v", i, got)
		}
	}
	if _, err := infertrail.UnmarshalContentRefs(append(b[:len(b):len(b)], 0)); err == nil {
		t.Error("a trailing byte was accepted")
	}
	for _, bad := range [][]byte{{0}, {2}, {1}, {1, 0x80}, {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		{1, 1, 5, 'a'}, {1, 1, 0}, append([]byte{1, 1, 0}, make([]byte, 17)...), append([]byte{1, 1, 0}, append(make([]byte, 17), 0xff, 0x7f)...)} {
		if got, err := infertrail.UnmarshalContentRefs(bad); err == nil {
			t.Errorf("UnmarshalContentRefs(%x) = %+v, want an error", bad, got)
		}
	}
}

// TestContentRefsShortIDs: blob ids that start with their ref's key id are
// stored without it, and come back whole; a ref with one blob id of
// another key keeps all its ids whole.
func TestContentRefsShortIDs(t *testing.T) {
	key := infertrail.KeyID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	var salt [infertrail.SaltSize]byte
	ids := make([]infertrail.BlobID, 5)
	for i := range ids {
		copy(ids[i][:], key[:])
		ids[i][20], ids[i][31] = byte(i), byte(100+i)
	}
	other := ids[0]
	other[0] ^= 0xff
	short := []infertrail.ContentRef{{Field: "gen_ai.input.messages", Salt: salt, Key: key, Array: true, Blobs: ids}}
	mixed := []infertrail.ContentRef{{Field: "gen_ai.input.messages", Salt: salt, Key: key, Array: true, Blobs: append(slices.Clone(ids), other)}}
	bs, bm := infertrail.MarshalContentRefs(short), infertrail.MarshalContentRefs(mixed)
	if d := len(bm) - len(bs); d != 6*len(infertrail.BlobID{})-5*(len(infertrail.BlobID{})-len(infertrail.KeyID{})) {
		t.Errorf("short ids take %d bytes, mixed %d: want 16 bytes saved per id", len(bs), len(bm))
	}
	for _, c := range []struct {
		refs []infertrail.ContentRef
		b    []byte
	}{{short, bs}, {mixed, bm}} {
		got, err := infertrail.UnmarshalContentRefs(c.b)
		if err != nil || !refsEqual(c.refs, got) {
			t.Errorf("round trip: %+v, %v; want %+v", got, err, c.refs)
		}
		for i := range len(c.b) {
			if got, err := infertrail.UnmarshalContentRefs(c.b[:i]); i > 0 && err == nil {
				t.Errorf("truncated to %d bytes: accepted %+v", i, got)
			}
		}
	}
	// Short ids need a key to complete them, and version 2 has none.
	v3 := infertrail.MarshalContentRefsV3(short)
	noKey := slices.Clone(v3)
	at := 1 + 1 + 1 + len("gen_ai.input.messages") + infertrail.SaltSize
	clear(noKey[at+1 : at+1+len(infertrail.KeyID{})])
	v2 := append([]byte{2}, v3[1:]...)
	for _, bad := range [][]byte{noKey, v2} {
		if got, err := infertrail.UnmarshalContentRefs(bad); err == nil {
			t.Errorf("UnmarshalContentRefs(%x) = %+v, want an error", bad, got)
		}
	}
}

// TestContentRefsV4: version 4 stores a key shared with the ref before
// once, a zero key not at all, and a known field name as one byte.
func TestContentRefsV4(t *testing.T) {
	key := infertrail.KeyID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	other := infertrail.KeyID{7}
	var salt [infertrail.SaltSize]byte
	id := func(k infertrail.KeyID, n byte) (b infertrail.BlobID) {
		copy(b[:], k[:])
		b[31] = n
		return b
	}
	refs := []infertrail.ContentRef{
		{Field: "gen_ai.input.messages", Salt: salt, Key: key, Array: true, Blobs: []infertrail.BlobID{id(key, 1), id(key, 2)}},
		{Field: "gen_ai.output.messages", Salt: salt, Key: key, Blobs: []infertrail.BlobID{id(key, 3)}},
		{Field: "gen_ai.tool.definitions", Salt: salt, Key: other, Array: true, Blobs: []infertrail.BlobID{id(other, 4)}},
		{Field: "x.custom", Salt: salt, Key: other, Blobs: []infertrail.BlobID{id(other, 5)}},
		{Field: "response", Salt: salt, Blobs: []infertrail.BlobID{id(infertrail.KeyID{}, 6)}},
		{Field: "error", Salt: salt, Omitted: true},
	}
	b4, b3 := infertrail.MarshalContentRefsV4(refs), infertrail.MarshalContentRefsV3(refs)
	// Saved: two shared keys, two zero keys, five field names less their byte.
	names := len("gen_ai.input.messages") + len("gen_ai.output.messages") + len("gen_ai.tool.definitions") + len("response") + len("error")
	if want := len(b3) - 4*len(infertrail.KeyID{}) - names; len(b4) != want {
		t.Errorf("version 4 takes %d bytes, want %d (version 3: %d)", len(b4), want, len(b3))
	}
	for _, b := range [][]byte{b4, b3} {
		got, err := infertrail.UnmarshalContentRefs(b)
		if err != nil || !refsEqual(refs, got) {
			t.Fatalf("round trip of version %d: %+v, %v", b[0], got, err)
		}
		for i := range len(b) {
			if got, err := infertrail.UnmarshalContentRefs(b[:i]); i > 0 && err == nil {
				t.Errorf("version %d truncated to %d bytes: accepted %+v", b[0], i, got)
			}
		}
	}
	// The first ref's flags byte follows the version and the count.
	first := func(flags byte, rest ...byte) []byte {
		return append(append([]byte{4, 1, flags}, rest...), make([]byte, infertrail.SaltSize+len(infertrail.KeyID{})+1)...)
	}
	for name, bad := range map[string][]byte{
		"shared key on the first ref": first(8|32, 0),
		"shared and zero key":         append(b4[:len(b4):len(b4)], 0),
		"unknown field code":          first(32, 200),
		"unknown flag":                first(64|32, 0),
		"short ids with a zero key":   first(4|16|32, 0),
		"version 6":                   append([]byte{6}, b4[1:]...),
	} {
		if name == "shared and zero key" {
			bad = slices.Clone(b4)
			bad[2] |= 8 | 16
		}
		if got, err := infertrail.UnmarshalContentRefs(bad); err == nil {
			t.Errorf("%s: UnmarshalContentRefs(%x) = %+v, want an error", name, bad, got)
		}
	}
}

// TestContentRefsV5: version 5 stores the short blob ids of a ref without
// their last bytes when every one of them ends in ShortBlobZeros zeros,
// as the ids the ledger makes now do; other refs as version 4 did.
func TestContentRefsV5(t *testing.T) {
	key := infertrail.KeyID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	var salt [infertrail.SaltSize]byte
	id := func(k infertrail.KeyID, n, last byte) (b infertrail.BlobID) {
		copy(b[:], k[:])
		b[16], b[27], b[31] = n, n, last
		return b
	}
	refs := []infertrail.ContentRef{
		{Field: "gen_ai.input.messages", Salt: salt, Key: key, Array: true, Blobs: []infertrail.BlobID{id(key, 1, 0), id(key, 2, 0), id(key, 1, 0)}},
		{Field: "gen_ai.output.messages", Salt: salt, Key: key, Blobs: []infertrail.BlobID{id(key, 3, 0)}},
		{Field: "gen_ai.tool.definitions", Salt: salt, Key: key, Array: true, Blobs: []infertrail.BlobID{id(key, 4, 0), id(key, 5, 9)}},
		{Field: "response", Salt: salt, Blobs: []infertrail.BlobID{id(infertrail.KeyID{}, 6, 0)}},
		{Field: "error", Salt: salt, Omitted: true},
	}
	b5, b4 := infertrail.MarshalContentRefs(refs), infertrail.MarshalContentRefsV4(refs)
	// Saved: the last bytes of the first two refs' four ids; the third
	// ref has an id that does not end in zeros, the fourth no key.
	if want := len(b4) - 4*infertrail.ShortBlobZeros; len(b5) != want || b5[0] != 5 {
		t.Errorf("version %d takes %d bytes, want version 5 in %d (version 4: %d)", b5[0], len(b5), want, len(b4))
	}
	got, err := infertrail.UnmarshalContentRefs(b5)
	if err != nil || !refsEqual(refs, got) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for i := range len(b5) {
		if got, err := infertrail.UnmarshalContentRefs(b5[:i]); i > 0 && err == nil {
			t.Errorf("truncated to %d bytes: accepted %+v", i, got)
		}
	}
	// Shorter ids are short ids: the flag alone is refused, and so it is
	// in version 4.
	first := func(version, flags byte) []byte {
		b := append([]byte{version, 1, flags, 0}, make([]byte, infertrail.SaltSize+len(infertrail.KeyID{}))...)
		b[len(b)-1] = 7 // a key
		return append(b, 0)
	}
	for name, bad := range map[string][]byte{
		"shorter ids, not short": first(5, 32|64),
		"shorter ids, version 4": first(4, 4|32|64),
	} {
		if got, err := infertrail.UnmarshalContentRefs(bad); err == nil {
			t.Errorf("%s: UnmarshalContentRefs(%x) = %+v, want an error", name, bad, got)
		}
	}
	if got, err := infertrail.UnmarshalContentRefs(first(5, 4|32|64)); err != nil || len(got) != 1 {
		t.Errorf("shorter ids: UnmarshalContentRefs = %+v, %v; want one ref", got, err)
	}
}

// refsEqual compares refs, treating nil and empty blob lists alike.
func refsEqual(a, b []infertrail.ContentRef) bool {
	return slices.EqualFunc(a, b, func(x, y infertrail.ContentRef) bool {
		return x.Field == y.Field && x.Salt == y.Salt && x.Array == y.Array && x.Key == y.Key && x.Omitted == y.Omitted && slices.Equal(x.Blobs, y.Blobs)
	})
}

func FuzzContentRefs(f *testing.F) {
	f.Add(infertrail.MarshalContentRefs(sampleRefs()))
	f.Add(infertrail.MarshalContentRefs(sampleRefs()[:1]))
	f.Add(infertrail.MarshalContentRefsV3(sampleRefs()))
	f.Add(infertrail.MarshalContentRefsV4(sampleRefs()))
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	shortRefs := sampleRefs()[:1]
	shortRefs[0].Key = infertrail.KeyID(shortRefs[0].Blobs[0][:16])
	shortRefs[0].Blobs = shortRefs[0].Blobs[:1]
	f.Add(infertrail.MarshalContentRefs(shortRefs))
	f.Fuzz(func(t *testing.T, b []byte) {
		refs, err := infertrail.UnmarshalContentRefs(b)
		if err != nil {
			return
		}
		again := infertrail.MarshalContentRefs(refs)
		back, err := infertrail.UnmarshalContentRefs(again)
		if err != nil {
			t.Fatalf("re-encoded refs do not decode: %v", err)
		}
		if !refsEqual(refs, back) {
			t.Fatalf("decode → encode → decode differs")
		}
		if len(refs) > 0 && !bytes.Equal(infertrail.MarshalContentRefs(back), again) {
			t.Fatalf("encoding is not stable")
		}
	})
}
