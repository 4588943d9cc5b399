package export_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/mod/sumdb/note"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/export"
	"github.com/infertrail/infertrail/keys"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/store/sqlite"
)

// exampleLog opens a log in a fresh folder and records an inference and
// the tool call it asked for. It returns the log, its verifier key, their
// sequence numbers and a function that closes everything.
func exampleLog() (*ledger.Log, string, []int64, func()) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bundle-example-")
	if err != nil {
		panic(err)
	}
	db, err := sqlite.Open(ctx, filepath.Join(dir, "log.db"), sqlite.Config{})
	if err != nil {
		panic(err)
	}
	skey, vkey, _ := ledger.GenerateKey("example.com/audit")
	signer, verifier, _, _ := ledger.KeyPair(skey)
	kek, err := keys.CreateKeyring(filepath.Join(dir, "content-keys"))
	if err != nil {
		panic(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	l, err := ledger.Open(ctx, ledger.Config{Store: db, Signer: signer, Verifier: verifier, Origin: "example.com/audit",
		Secret: secret, KEK: kek, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		panic(err)
	}
	seqs, err := l.Record(ctx,
		&infertrail.Record{Kind: infertrail.KindInference, Source: "example", SessionID: "sess-42",
			Attributes: map[string]json.RawMessage{"gen_ai.request.model": json.RawMessage(`"gpt-4o"`)},
			Content:    map[string]json.RawMessage{"gen_ai.input.messages": json.RawMessage(`[{"role":"user","parts":[{"type":"text","content":"Pay invoice 7"}]}]`)}},
		&infertrail.Record{Kind: infertrail.KindToolCall, Source: "example", SessionID: "sess-42",
			Attributes: map[string]json.RawMessage{"gen_ai.tool.name": json.RawMessage(`"approve_payment"`)},
			Content:    map[string]json.RawMessage{"gen_ai.tool.call.arguments": json.RawMessage(`{"invoice":7}`)}},
	)
	if err != nil {
		panic(err)
	}
	return l, vkey, seqs, func() { l.Close(); db.Close(); os.RemoveAll(dir) }
}

func ExampleWriteBundle() {
	l, vkey, seqs, done := exampleLog()
	defer done()

	var bundle bytes.Buffer
	m, err := export.WriteBundle(context.Background(), &bundle, l, export.BundleOptions{
		Seqs:        seqs,
		Content:     true, // reveal the content and its salts
		Title:       "session sess-42",
		Exporter:    "user:carol@audit.example",
		VerifierKey: vkey,
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("checkpoint size:", m.Checkpoint.Size)
	for _, r := range m.Records {
		fmt.Println(r.Seq, r.Kind, r.Leaf, r.Proof, r.Content)
	}
	// Output:
	// checkpoint size: 2
	// 0 inference records/0.json proofs/0.proof content/0.json
	// 1 tool_call records/1.json proofs/1.proof content/1.json
}

func ExampleVerifyBundle() {
	l, vkey, seqs, done := exampleLog()
	defer done()
	var bundle bytes.Buffer
	if _, err := export.WriteBundle(context.Background(), &bundle, l, export.BundleOptions{Seqs: seqs, Content: true, VerifierKey: vkey}); err != nil {
		panic(err)
	}

	// The auditor holds the bundle and the log's verifier key, obtained
	// from the log's operator; nothing else.
	key, err := note.NewVerifier(vkey)
	if err != nil {
		panic(err)
	}
	rep, err := export.VerifyBundle(bytes.NewReader(bundle.Bytes()), int64(bundle.Len()), key)
	if err != nil {
		fmt.Println("FAILED:", err)
		return
	}
	for _, r := range rep.Records {
		fmt.Printf("record %d (%s): included %v, %d content field checked\n", r.Seq, r.Kind, r.Included, r.Checked)
	}

	// Rename a file inside the archive, and verification names what is wrong.
	b := bytes.Replace(bundle.Bytes(), []byte("records/1.json"), []byte("records/9.json"), 1)
	_, err = export.VerifyBundle(bytes.NewReader(b), int64(len(b)), key)
	fmt.Println(err)
	// Output:
	// record 0 (inference): included true, 1 content field checked
	// record 1 (tool_call): included true, 1 content field checked
	// record 1 (records/1.json): the zip entry's local header names it "records/9.json": zip tools would disagree on what the bundle holds
}
