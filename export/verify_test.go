package export_test

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/export"
	"github.com/infertrail/infertrail/ledger"
)

// zipEntry is one file of a bundle, as a tamperer sees it.
type zipEntry struct {
	name string
	data []byte
}

// unzipAll returns a zip archive's entries in order.
func unzipAll(tb testing.TB, b []byte) []zipEntry {
	tb.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		tb.Fatal(err)
	}
	var out []zipEntry
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			tb.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, zipEntry{f.Name, data})
	}
	return out
}

// zipAll writes entries as a zip archive, as any zip tool would.
func zipAll(tb testing.TB, es []zipEntry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range es {
		w, err := zw.Create(e.name)
		if err != nil {
			tb.Fatal(err)
		}
		w.Write(e.data)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// bundleFiles is a bundle taken apart, to be altered and put together.
type bundleFiles struct {
	es []zipEntry
	m  export.Manifest
	// editManifest, if set, alters manifest.json's bytes once encoded.
	editManifest func([]byte) []byte
}

func takeApart(tb testing.TB, b []byte) *bundleFiles {
	tb.Helper()
	bf := &bundleFiles{es: unzipAll(tb, b)}
	if err := json.Unmarshal(bf.get(tb, export.ManifestFile), &bf.m); err != nil {
		tb.Fatal(err)
	}
	return bf
}

func (bf *bundleFiles) index(name string) int {
	for i, e := range bf.es {
		if e.name == name {
			return i
		}
	}
	return -1
}

func (bf *bundleFiles) get(tb testing.TB, name string) []byte {
	tb.Helper()
	i := bf.index(name)
	if i < 0 {
		tb.Fatalf("the bundle has no %s", name)
	}
	return bf.es[i].data
}

func (bf *bundleFiles) set(name string, data []byte) {
	if i := bf.index(name); i >= 0 {
		bf.es[i].data = data
	} else {
		bf.es = append(bf.es, zipEntry{name, data})
	}
}

func (bf *bundleFiles) remove(name string) {
	if i := bf.index(name); i >= 0 {
		bf.es = append(bf.es[:i], bf.es[i+1:]...)
	}
}

// replace replaces old by new in a file, once, and fails if it is not there.
func (bf *bundleFiles) replace(tb testing.TB, name, old, new string) {
	tb.Helper()
	data := bf.get(tb, name)
	if !bytes.Contains(data, []byte(old)) {
		tb.Fatalf("%s does not hold %q:\n%s", name, old, data)
	}
	bf.set(name, bytes.Replace(data, []byte(old), []byte(new), 1))
}

// rehash makes the manifest's hashes match the files, as a tamperer who
// knows the format would.
func (bf *bundleFiles) rehash() {
	for _, e := range bf.es {
		if e.name != export.ManifestFile {
			if _, ok := bf.m.Files[e.name]; ok {
				bf.m.Files[e.name] = sha256Hex(e.data)
			}
		}
	}
}

// bytes puts the bundle together with the manifest as it now is.
func (bf *bundleFiles) bytes(tb testing.TB) []byte {
	tb.Helper()
	mj, err := json.MarshalIndent(&bf.m, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	if bf.editManifest != nil {
		mj = bf.editManifest(mj)
	}
	bf.set(export.ManifestFile, mj)
	return zipAll(tb, bf.es)
}

// TestVerifyBundleTampered alters a good bundle in every way an attacker
// (or an accident) could, and checks that verification fails and names the
// record or the file at fault. Unless a case says otherwise, the manifest's
// hashes are then fixed up, so that what must catch the change is the
// cryptography, not the bookkeeping.
func TestVerifyBundleTampered(t *testing.T) {
	l := newTestLog(t)
	l.noise(t, 4)
	sess := l.appendSession(t, "acme", "sess-42")
	l.sign(t)
	l.noise(t, 9)
	l.sign(t) // so that the consistency proof is not empty
	good, _ := l.writeBundle(t, export.BundleOptions{Seqs: sess, Content: true, Title: "session sess-42"})
	verifyOK(t, good, l.verifier)
	// Taken apart and put together again unchanged, it still verifies: each
	// case below fails for what it alters alone.
	verifyOK(t, takeApart(t, good).bytes(t), l.verifier)
	_, otherVKey, err := ledger.GenerateKey(testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := note.NewVerifier(otherVKey)
	if err != nil {
		t.Fatal(err)
	}
	inf, tool, appr := sess[1], sess[5], sess[3] // inference, tool call, approval
	leaf := func(seq int64) string { return export.LeafFile(seq) }
	proof := func(seq int64) string { return export.ProofFile(seq) }
	content := func(seq int64) string { return export.ContentFile(seq) }
	rec := func(seq int64) string { return fmt.Sprintf("record %d ", seq) }
	editContent := func(tb testing.TB, bf *bundleFiles, seq int64, edit func(map[string]map[string]json.RawMessage)) {
		tb.Helper()
		var cf struct {
			Seq    int64                                 `json:"seq"`
			ID     string                                `json:"id"`
			Fields map[string]map[string]json.RawMessage `json:"fields"`
		}
		if err := json.Unmarshal(bf.get(tb, content(seq)), &cf); err != nil {
			tb.Fatal(err)
		}
		edit(cf.Fields)
		b, _ := json.Marshal(cf)
		b, err := infertrail.Canonicalize(b)
		if err != nil {
			tb.Fatal(err)
		}
		bf.set(content(seq), b)
	}
	manifestRecord := func(bf *bundleFiles, seq int64) *export.ManifestRecord {
		for i := range bf.m.Records {
			if bf.m.Records[i].Seq == seq {
				return &bf.m.Records[i]
			}
		}
		t.Fatalf("no record %d in the manifest", seq)
		return nil
	}

	for _, tc := range []struct {
		name   string
		alter  func(tb testing.TB, bf *bundleFiles)
		raw    func(b []byte) []byte // alters the archive's bytes instead
		key    note.Verifier
		keep   bool     // leave the manifest's hashes as they were
		want   []string // the error must mention each
		record int64    // the record the error must name, or -1
	}{
		{name: "leaf byte, hashes as they were", keep: true, record: inf, want: []string{leaf(inf), "SHA-256"},
			alter: func(tb testing.TB, bf *bundleFiles) {
				bf.replace(tb, leaf(inf), "agent:payments-bot", "agent:paymentS-bot")
			}},
		{name: "leaf byte", record: inf, want: []string{proof(inf), "not in the tree"},
			alter: func(tb testing.TB, bf *bundleFiles) {
				bf.replace(tb, leaf(inf), "gpt-4o-2024-08-06", "gpt-4o-2024-08-07")
			}},
		{name: "leaf not canonical", record: inf, want: []string{leaf(inf), "canonical"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.replace(tb, leaf(inf), `"kind":`, `"kind": `) }},
		{name: "two leaves swapped", record: inf, want: []string{leaf(inf), fmt.Sprintf("leaf of record %d", tool)},
			alter: func(tb testing.TB, bf *bundleFiles) {
				a, b := bf.get(tb, leaf(inf)), bf.get(tb, leaf(tool))
				bf.set(leaf(inf), b)
				bf.set(leaf(tool), a)
			}},
		{name: "proof dropped", keep: true, record: tool, want: []string{proof(tool), "missing"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.remove(proof(tool)) }},
		{name: "proof dropped, manifest too", record: tool, want: []string{proof(tool), "missing"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.remove(proof(tool)); delete(bf.m.Files, proof(tool)) }},
		{name: "proof hash altered", record: tool, want: []string{proof(tool), "not in the tree"},
			alter: func(tb testing.TB, bf *bundleFiles) {
				lines := strings.Split(string(bf.get(tb, proof(tool))), "\n")
				h, _ := base64.StdEncoding.DecodeString(lines[2])
				h[0] ^= 1
				lines[2] = base64.StdEncoding.EncodeToString(h)
				bf.set(proof(tool), []byte(strings.Join(lines, "\n")))
			}},
		{name: "proof of another index", record: tool, want: []string{proof(tool), "index"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.set(proof(tool), bf.get(tb, proof(inf))) }},
		{name: "checkpoint root altered", record: -1, want: []string{export.CheckpointFile, "not signed"},
			alter: func(tb testing.TB, bf *bundleFiles) {
				cp := string(bf.get(tb, export.CheckpointFile))
				lines := strings.SplitN(cp, "\n", 4)
				h, _ := base64.StdEncoding.DecodeString(lines[2])
				h[5] ^= 0x80
				lines[2] = base64.StdEncoding.EncodeToString(h)
				bf.set(export.CheckpointFile, []byte(strings.Join(lines, "\n")))
			}},
		{name: "checkpoint signature altered", record: -1, want: []string{export.CheckpointFile, "not signed"},
			alter: func(tb testing.TB, bf *bundleFiles) {
				cp := bf.get(tb, export.CheckpointFile)
				i := bytes.LastIndexByte(cp[:len(cp)-1], ' ') + 10
				cp = bytes.Clone(cp)
				cp[i] ^= 'A' ^ 'B'
				bf.set(export.CheckpointFile, cp)
			}},
		{name: "latest checkpoint altered", record: -1, want: []string{export.LatestCheckpointFile, "not signed"},
			alter: func(tb testing.TB, bf *bundleFiles) {
				bf.replace(tb, export.LatestCheckpointFile, "\n"+fmt.Sprint(bf.m.Latest.Size)+"\n", "\n"+fmt.Sprint(bf.m.Latest.Size+1)+"\n")
			}},
		{name: "another key", key: otherKey, record: -1, want: []string{export.CheckpointFile, "not signed by the key", fmt.Sprintf("%08x", otherKey.KeyHash())},
			alter: func(tb testing.TB, bf *bundleFiles) {}},
		{name: "another key in the manifest", record: -1, want: []string{export.ManifestFile, "not the key given"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.m.VerifierKey = otherVKey }},
		{name: "revealed content altered", record: inf, want: []string{content(inf), "gen_ai.input.messages", "commitment"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.replace(tb, content(inf), "1200 EUR", "1300 EUR") }},
		{name: "salt altered", record: appr, want: []string{content(appr), "approval.rationale", "commitment"},
			alter: func(tb testing.TB, bf *bundleFiles) {
				editContent(tb, bf, appr, func(f map[string]map[string]json.RawMessage) {
					f["approval.rationale"]["salt"] = json.RawMessage(`"00000000000000000000000000000000"`)
				})
			}},
		{name: "content passed off as erased", record: tool, want: []string{content(tool), "not an erasure record"},
			alter: func(tb testing.TB, bf *bundleFiles) {
				editContent(tb, bf, tool, func(f map[string]map[string]json.RawMessage) {
					f["gen_ai.tool.call.result"] = map[string]json.RawMessage{"erased_by": json.RawMessage(fmt.Sprint(inf))}
				})
			}},
		{name: "content field dropped", record: tool, want: []string{content(tool), "gen_ai.tool.call.result", "missing"},
			alter: func(tb testing.TB, bf *bundleFiles) {
				editContent(tb, bf, tool, func(f map[string]map[string]json.RawMessage) { delete(f, "gen_ai.tool.call.result") })
			}},
		{name: "content of another record", record: tool, want: []string{content(tool), fmt.Sprintf("content of record %d", inf)},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.set(content(tool), bf.get(tb, content(inf))) }},
		{name: "content file removed", keep: true, record: inf, want: []string{content(inf), "missing"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.remove(content(inf)) }},
		{name: "summary removed", keep: true, record: -1, want: []string{export.SummaryFile, "missing"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.remove(export.SummaryFile) }},
		{name: "extra file", keep: true, record: -1, want: []string{"notes.txt", "not a file of the bundle"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.set("notes.txt", []byte("hello")) }},
		{name: "extra record", keep: true, record: 999, want: []string{leaf(999), "not listed in the manifest"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.set(leaf(999), bf.get(tb, leaf(inf))) }},
		{name: "extra file listed in the manifest", record: -1, want: []string{"notes.txt"},
			alter: func(tb testing.TB, bf *bundleFiles) {
				bf.set("notes.txt", []byte("hello"))
				bf.m.Files["notes.txt"] = sha256Hex([]byte("hello"))
			}},
		{name: "directory entry", keep: true, record: -1, want: []string{"records/", "not a file of the bundle"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.set("records/", nil) }},
		{name: "path outside the bundle", keep: true, record: -1, want: []string{"../records/1.json", "not a file of the bundle"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.set("../records/1.json", []byte("{}")) }},
		{name: "absolute path", keep: true, record: -1, want: []string{"/etc/passwd", "not a file of the bundle"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.set("/etc/passwd", []byte("x")) }},
		{name: "backslash path", keep: true, record: -1, want: []string{`records\\1.json`, "not a file of the bundle"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.set(`records\1.json`, []byte("x")) }},
		{name: "leading zero", keep: true, record: -1, want: []string{"records/07.json", "not a file of the bundle"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.set("records/07.json", []byte("x")) }},
		{name: "duplicate entry", keep: true, record: inf, want: []string{leaf(inf), "two entries"},
			alter: func(tb testing.TB, bf *bundleFiles) {
				bf.es = append(bf.es, zipEntry{leaf(inf), bytes.Replace(bf.get(tb, leaf(inf)), []byte("gpt-4o"), []byte("gpt-5o"), 1)})
			}},
		{name: "oversized leaf", keep: true, record: inf, want: []string{leaf(inf), "more than"},
			alter: func(tb testing.TB, bf *bundleFiles) {
				bf.set(leaf(inf), bytes.Repeat([]byte(" "), ledger.MaxEntrySize+1))
			}},
		{name: "manifest seq altered", record: inf + 100, want: []string{export.ManifestFile, "names files"},
			alter: func(tb testing.TB, bf *bundleFiles) { manifestRecord(bf, inf).Seq = inf + 100 }},
		{name: "manifest seq and files renamed", record: 2, want: []string{leaf(2), fmt.Sprintf("leaf of record %d", sess[0])},
			alter: func(tb testing.TB, bf *bundleFiles) {
				r, s := manifestRecord(bf, sess[0]), int64(2)
				for _, n := range [][2]string{{r.Leaf, leaf(s)}, {r.Proof, proof(s)}, {r.Content, content(s)}} {
					bf.set(n[1], bf.get(tb, n[0]))
					bf.remove(n[0])
					bf.m.Files[n[1]] = bf.m.Files[n[0]]
					delete(bf.m.Files, n[0])
				}
				r.Seq, r.Leaf, r.Proof, r.Content = s, leaf(s), proof(s), content(s)
			}},
		{name: "manifest id altered", record: tool, want: []string{export.ManifestFile, "says id"},
			alter: func(tb testing.TB, bf *bundleFiles) { manifestRecord(bf, tool).ID = infertrail.NewUUID() }},
		{name: "manifest kind altered", record: tool, want: []string{export.ManifestFile, "says kind"},
			alter: func(tb testing.TB, bf *bundleFiles) { manifestRecord(bf, tool).Kind = infertrail.KindApproval }},
		{name: "record passed off as added", record: inf, want: []string{export.ManifestFile, "only erasure records are added"},
			alter: func(tb testing.TB, bf *bundleFiles) {
				r := manifestRecord(bf, inf)
				r.Added, r.Content = export.AddedErasure, ""
				bf.remove(content(inf))
				delete(bf.m.Files, content(inf))
			}},
		{name: "manifest record dropped", record: tool, want: []string{"not listed in the manifest"},
			alter: func(tb testing.TB, bf *bundleFiles) {
				for i, r := range bf.m.Records {
					if r.Seq == tool {
						bf.m.Records = append(bf.m.Records[:i], bf.m.Records[i+1:]...)
						break
					}
				}
			}},
		{name: "manifest title altered", record: -1, want: []string{export.SummaryFile, "does not show what the verified records say"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.m.Title = "session sess-43" }},
		{name: "summary altered", record: -1, want: []string{export.SummaryFile, "does not show"},
			alter: func(tb testing.TB, bf *bundleFiles) {
				bf.replace(tb, export.SummaryFile, "require_approval</dd>", "allow</dd>")
			}},
		{name: "manifest checkpoint size altered", record: -1, want: []string{export.ManifestFile, "checkpoint has size"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.m.Checkpoint.Size++ }},
		{name: "manifest duplicate member", record: -1, want: []string{export.ManifestFile, "I-JSON"},
			alter: func(tb testing.TB, bf *bundleFiles) {
				bf.editManifest = func(mj []byte) []byte {
					return bytes.Replace(mj, []byte(`"title":`), []byte(`"title": "other", "title":`), 1)
				}
			}},
		{name: "consistency proof altered", record: -1, want: []string{export.ConsistencyFile, "prefix"},
			alter: func(tb testing.TB, bf *bundleFiles) {
				lines := strings.Split(string(bf.get(tb, export.ConsistencyFile)), "\n")
				h, _ := base64.StdEncoding.DecodeString(lines[1])
				h[31] ^= 1
				lines[1] = base64.StdEncoding.EncodeToString(h)
				bf.set(export.ConsistencyFile, []byte(strings.Join(lines, "\n")))
			}},
		{name: "consistency from another size", record: -1, want: []string{export.ConsistencyFile, "from size"},
			alter: func(tb testing.TB, bf *bundleFiles) { bf.replace(tb, export.ConsistencyFile, "old ", "old 1") }},
		{name: "zip truncated", record: -1, want: []string{"bundle:", "truncated"},
			raw: func(b []byte) []byte { return b[:len(b)-40] }},
		{name: "zip cut in half", record: -1, want: []string{"bundle:", "truncated"},
			raw: func(b []byte) []byte { return b[:len(b)/2] }},
		{name: "data before the archive", record: -1, want: []string{"bundle:", "does not start"},
			raw: func(b []byte) []byte { return append([]byte("#!/bin/sh\n"), b...) }},
		{name: "empty", record: -1, want: []string{"bundle:", "not a zip"},
			raw: func(b []byte) []byte { return nil }},
		{name: "compressed bytes altered", record: inf, want: []string{leaf(inf)},
			raw: func(b []byte) []byte {
				off := dataOffset(t, b, leaf(inf))
				b[off+3] ^= 0x55
				return b
			}},
		{name: "local header renamed", record: inf, want: []string{leaf(inf), "local header", `"records/1.json"`},
			raw: func(b []byte) []byte {
				off := dataOffset(t, b, leaf(inf))
				i := bytes.LastIndex(b[:off], []byte(leaf(inf)))
				copy(b[i:], leaf(1)+"\x00")
				return b
			}},
		{name: "data between entries", record: -1, want: []string{"bundle:", "zip directory"},
			raw: func(b []byte) []byte {
				zr, _ := zip.NewReader(bytes.NewReader(b), int64(len(b)))
				f := zr.File[1]
				off, _ := f.DataOffset()
				end := off + int64(f.CompressedSize64) + 16
				return append(append(b[:end:end], "hidden"...), b[end:]...)
			}},
		{name: "data after the archive", record: -1, want: []string{"bundle:", "end"},
			raw: func(b []byte) []byte { return append(b, "trailer"...) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b []byte
			switch {
			case tc.raw != nil:
				b = tc.raw(bytes.Clone(good))
			default:
				bf := takeApart(t, good)
				tc.alter(t, bf)
				if !tc.keep {
					bf.rehash()
				}
				b = bf.bytes(t)
			}
			key := l.verifier
			if tc.key != nil {
				key = tc.key
			}
			rep, err := export.VerifyBundle(bytes.NewReader(b), int64(len(b)), key)
			if err == nil || rep == nil || rep.OK() {
				t.Fatalf("VerifyBundle of a bundle with %s: no error\n%s", tc.name, rep)
			}
			var be *export.BundleError
			if !errors.As(err, &be) || !errors.Is(err, infertrail.ErrInvalid) {
				t.Errorf("error %v (%T) is not a *BundleError matching ErrInvalid", err, err)
			}
			msg := err.Error()
			for _, want := range tc.want {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not mention %q", msg, want)
				}
			}
			if tc.record >= 0 && !strings.Contains(msg+" ", fmt.Sprintf("record %d ", tc.record)) && !strings.Contains(msg, rec(tc.record)) {
				t.Errorf("error %q does not name record %d", msg, tc.record)
			}
			if tc.record >= 0 && be != nil && be.Seq != tc.record {
				t.Errorf("BundleError.Seq = %d, want %d", be.Seq, tc.record)
			}
			out := rep.String()
			if !strings.HasPrefix(out, "FAILED: "+msg) {
				t.Errorf("the report does not start with the failure:\n%s", out)
			}
			if tc.record >= 0 && !strings.Contains(out, fmt.Sprintf("The first bad record is %d.", tc.record)) {
				t.Errorf("the report does not name record %d:\n%s", tc.record, out)
			}
		})
	}
}

// TestVerifyBundleProblems checks that verification reports every bad
// record, not only the first, and keeps verifying the others.
func TestVerifyBundleProblems(t *testing.T) {
	l := newTestLog(t)
	sess := l.appendSession(t, "acme", "sess-42")
	good, _ := l.writeBundle(t, export.BundleOptions{Seqs: sess, Content: true})
	bf := takeApart(t, good)
	bf.replace(t, export.LeafFile(sess[1]), "gpt-4o-2024-08-06", "gpt-4o-2024-08-07")
	bf.replace(t, export.ContentFile(sess[3]), "PO-2291", "PO-2292")
	bf.remove(export.ProofFile(sess[5]))
	bf.rehash()
	b := bf.bytes(t)
	rep, err := export.VerifyBundle(bytes.NewReader(b), int64(len(b)), l.verifier)
	if err == nil {
		t.Fatal("no error")
	}
	bad := map[int64]bool{}
	for _, p := range rep.Problems {
		bad[p.Seq] = true
	}
	if len(rep.Problems) != 3 || !bad[sess[1]] || !bad[sess[3]] || !bad[sess[5]] {
		t.Errorf("problems: %v; want records %d, %d and %d", rep.Problems, sess[1], sess[3], sess[5])
	}
	for _, rr := range rep.Records {
		if ok := rr.Err == nil; ok == bad[rr.Seq] {
			t.Errorf("record %d: err %v", rr.Seq, rr.Err)
		}
		if !bad[rr.Seq] && !rr.Included {
			t.Errorf("record %d was not verified", rr.Seq)
		}
	}
	if rep.Summary {
		t.Error("the summary is said to match a bundle with bad records")
	}
}

// dataOffset returns where the named entry's data starts in a zip archive.
func dataOffset(tb testing.TB, b []byte, name string) int64 {
	tb.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range zr.File {
		if f.Name == name {
			off, err := f.DataOffset()
			if err != nil {
				tb.Fatal(err)
			}
			return off
		}
	}
	tb.Fatalf("no %s in the archive", name)
	return 0
}

func sha256Hex(b []byte) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256(b))
}

// TestVerifyBundleZip64 checks that the archive checks accept the zip64
// directory records that archives of more than 65,535 entries (bundles of
// over 21,845 records with content) have.
func TestVerifyBundleZip64(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := range 70_000 {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: export.LeafFile(int64(i)), Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("{}"))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	_, err := export.VerifyBundle(bytes.NewReader(b), int64(len(b)), nil)
	if err == nil || err.Error() != "manifest.json: missing from the bundle" {
		t.Errorf("VerifyBundle of a zip64 archive without a manifest = %v; want the manifest missing, and no fault of the archive", err)
	}
}
