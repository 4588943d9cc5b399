package ledger

import (
	"bytes"
	"encoding/json"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger/ledgertest"
	"github.com/infertrail/infertrail/load"
)

// BenchmarkSeal measures the per-record work done by appenders in parallel
// before the sequencer: content commitments, blob ids, compression, MAC and
// the two leaf halves.
func BenchmarkSeal(b *testing.B) {
	for _, mix := range []load.Mix{load.MixFixed, load.MixAgent} {
		b.Run(mix.String(), func(b *testing.B) {
			s := testSealer(b)
			g := load.NewGenerator(load.GenConfig{Mix: mix, Seed: 1})
			type sub struct {
				r   *infertrail.Record
				raw []byte
			}
			subs := make([]sub, 512)
			for i := range subs {
				r, raw, err := infertrail.ParseRecord(g.Next(), infertrail.Limits{})
				if err != nil {
					b.Fatal(err)
				}
				r.ReceivedTime, r.Source = time.Now(), "ingest"
				subs[i] = sub{r, raw}
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				sb := subs[i%len(subs)]
				out, err := s.seal(b.Context(), sb.r, s.identify(sb.r, sb.raw), true)
				if err != nil {
					b.Fatal(err)
				}
				// As the sequencer does after a commit.
				for _, bl := range out.blobs {
					s.stored.add([]infertrail.BlobID{bl.ID})
				}
			}
		})
	}
}

// testSealer returns a sealer under a zero secret and a test KEK.
func testSealer(tb testing.TB) *sealer {
	wk, err := newWriteKeys(ledgertest.NewKEK(tb), nil)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := newSealer(make([]byte, 32), wk)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// BenchmarkIdentify measures the identity of a record built in Go, as the
// gateways build them: its leaf and its content under the log's MAC key.
func BenchmarkIdentify(b *testing.B) {
	s := testSealer(b)
	r := goBuilt()
	b.ReportAllocs()
	for b.Loop() {
		s.identify(r, nil)
	}
}

// goBuilt returns a record as the LLM gateway builds one for a chat
// request, defaults filled in.
func goBuilt() *infertrail.Record {
	text := bytes.Repeat([]byte("Invoice 7 from ACME covers consulting for November; net 30 days. "), 30)
	return &infertrail.Record{ID: infertrail.NewUUID(), Kind: infertrail.KindInference, Tenant: "acme", Source: "openai",
		Time: time.Unix(1764300000, 5).UTC(), ReceivedTime: time.Unix(1764300001, 0).UTC(), SessionID: "s-1",
		Actor:      infertrail.Actor{ID: "agent:payments-bot", CredentialFingerprint: "hmac-sha256:0a1b"},
		Attributes: map[string]json.RawMessage{"gen_ai.request.model": json.RawMessage(`"gpt-4o"`)},
		Content: map[string]json.RawMessage{
			"gen_ai.input.messages":      infertrail.AppendString(nil, string(text)),
			"gen_ai.system_instructions": json.RawMessage(`"You are a payments assistant."`),
		}}
}

// TestGoForm holds the identity of a record built in Go to the bytes it
// has always been computed over (a retry of a record already in the log
// must still be recognised after an upgrade): the leaf without the
// server's fields, then each content field as a zero byte, its name, a
// zero byte and its value, in the order of the names.
func TestGoForm(t *testing.T) {
	r := goBuilt()
	c := *r
	c.Seq, c.ReceivedTime, c.Commitments = 0, time.Time{}, nil
	want := c.AppendLeaf(nil)
	for _, f := range slices.Sorted(maps.Keys(r.Content)) {
		want = append(want, 0)
		want = append(want, f...)
		want = append(want, 0)
		want = append(want, r.Content[f]...)
	}
	var got bytes.Buffer
	buf := writeGoForm(&got, r, nil)
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("Go form:\n got %q\nwant %q", got.Bytes(), want)
	}
	// The buffer handed back is reused, with no trace of the last record.
	got.Reset()
	r.Content["gen_ai.output.messages"] = json.RawMessage(`"ok"`)
	writeGoForm(&got, r, buf)
	if !bytes.HasSuffix(got.Bytes(), []byte("\x00gen_ai.output.messages\x00\"ok\"\x00gen_ai.system_instructions\x00\"You are a payments assistant.\"")) ||
		!bytes.HasPrefix(got.Bytes(), want[:100]) {
		t.Errorf("Go form with a reused buffer:\n%q", got.Bytes())
	}
}

// TestCompressShortText checks that a message of a few hundred bytes of
// text, in which zstd's fastest level finds no repeat, is still stored
// compressed (its literals Huffman-coded, the frame without its magic
// number), and decodes to itself.
func TestCompressShortText(t *testing.T) {
	s := testSealer(t)
	for _, plain := range []string{
		`{"role":"user","parts":[{"type":"text","content":"Confirm when close agent user month a tomorrow role calendar team. About payment refund analysis within. From on total when escalated close fee previous before internal document notify when they name customer."}]}`,
		strings.Repeat("every record of an inference is evidence; ", 40),
	} {
		codec, data := s.compress([]byte(plain))
		if codec != infertrail.CodecZstdBare || len(data) >= len(plain)*3/4 {
			t.Errorf("%d bytes of text stored with codec %d in %d bytes, want zstd in less than three quarters", len(plain), codec, len(data))
			continue
		}
		got, err := DecodeBlob(infertrail.Blob{Codec: codec, Data: data})
		if err != nil || string(got) != plain {
			t.Errorf("decoded %q, %v; want the text back", got, err)
		}
		// A blob stored before 2026-11-29 holds the whole frame.
		frame := append(slices.Clone(zstdMagic), data...)
		if got, err := DecodeBlob(infertrail.Blob{Codec: infertrail.CodecZstd, Data: frame}); err != nil || string(got) != plain {
			t.Errorf("the whole frame decoded %q, %v; want the text back", got, err)
		}
		if got, err := DecodeBlob(infertrail.Blob{Codec: infertrail.CodecZstdBare, Data: frame}); err == nil {
			t.Errorf("a frame with its magic number twice decoded as %q", got)
		}
	}
	// Bytes that do not compress are stored as they are.
	random := make([]byte, 300)
	rand.NewChaCha8([32]byte{1}).Read(random)
	if codec, data := s.compress(random); codec != infertrail.CodecRaw || !bytes.Equal(data, random) {
		t.Errorf("300 incompressible bytes stored with codec %d in %d bytes, want raw", codec, len(data))
	}
}
