package ledger

import (
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
			wk, err := newWriteKeys(ledgertest.NewKEK(b), nil)
			if err != nil {
				b.Fatal(err)
			}
			s, err := newSealer(make([]byte, 32), wk)
			if err != nil {
				b.Fatal(err)
			}
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
				out, err := s.seal(b.Context(), sb.r, sb.raw, true)
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
