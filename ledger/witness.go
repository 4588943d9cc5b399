package ledger

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/internal/quiet"
)

// A Witness is a C2SP tlog-witness (https://c2sp.org/tlog-witness) that
// the log sends each new checkpoint to, with a consistency proof from the
// last one it cosigned. A witness cosigns a checkpoint only if the tree
// it describes extends every tree it cosigned of the log before, so a
// checkpoint it cosigned cannot be followed by a rewritten log, or shown
// to one client while another is shown a different one, without the
// witness refusing: not even by whoever holds the log's key.
type Witness struct {
	// URL is the witness's base URL: checkpoints are POSTed to
	// URL/add-checkpoint.
	URL string
	// Verifier verifies the witness's cosignatures (a C2SP
	// tlog-cosignature key, such as filippo.io/torchwood's
	// NewCosignatureVerifier gives). Its name is the witness's.
	Verifier note.Verifier
	// Timeout bounds one request (default 10 s).
	Timeout time.Duration
}

// maxWitnessResponse bounds what is read of a witness's answer.
const maxWitnessResponse = 64 << 10

// newWitnesses checks ws and returns their states.
func newWitnesses(ws []Witness) ([]*witnessState, error) {
	var out []*witnessState
	for i, w := range ws {
		if w.Verifier == nil {
			return nil, fmt.Errorf("witness %d: no verifier key", i)
		}
		if !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "https://") {
			return nil, fmt.Errorf("witness %s: URL %q: want http:// or https://", w.Verifier.Name(), w.URL)
		}
		if w.Timeout < 0 {
			return nil, fmt.Errorf("witness %s: timeout %v is negative", w.Verifier.Name(), w.Timeout)
		}
		if w.Timeout == 0 {
			w.Timeout = 10 * time.Second
		}
		out = append(out, &witnessState{Witness: w, client: &http.Client{Timeout: w.Timeout}, size: -1})
	}
	return out, nil
}

// witnessState is what the log knows of one witness.
type witnessState struct {
	Witness
	client *http.Client
	size   int64 // the size of the tree it last cosigned or said it has; -1 unknown
	fails  quiet.Run
}

// witnesses sends each new checkpoint to every witness, on a goroutine of
// its own, and again every retry while a witness has not cosigned the
// latest: a witness that is down or slow never holds up the log. When the
// log closes, the final checkpoint is sent to each witness that has not
// cosigned it, all at once, each for at most its timeout: the log's last
// state is witnessed before the server stops, not at its next start.
func (l *Log) witnesses(ws []*witnessState, wake <-chan struct{}) {
	const retry = 10 * time.Second
	t := time.NewTicker(retry)
	defer t.Stop()
	base, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		<-l.done // a request under way when the log closes is given up
		stop()
	}()
	for base.Err() == nil {
		select {
		case <-l.done:
		case <-wake:
		case <-t.C:
		}
		if base.Err() != nil {
			break
		}
		cp, err := l.LatestCheckpoint(base)
		if err != nil {
			continue
		}
		for _, w := range ws {
			if w.size >= cp.Size {
				continue
			}
			ctx, cancel := context.WithTimeout(base, 3*w.Timeout)
			err := l.cosign(ctx, w, cp)
			cancel()
			if base.Err() != nil {
				break
			}
			l.cosigned(w, cp, err)
		}
	}
	<-l.final
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.CommitTimeout)
	cp, err := l.LatestCheckpoint(ctx)
	cancel()
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	for _, w := range ws {
		if w.size >= cp.Size {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), w.Timeout)
			defer cancel()
			if err := l.cosign(ctx, w, cp); err != nil {
				l.m.witnessFailed(w.Verifier.Name())
				l.log.Warn("witness: the final checkpoint is not cosigned; it is sent again at the next start", "witness", w.Verifier.Name(), "size", cp.Size, "err", err)
			}
		})
	}
	wg.Wait()
}

// cosigned logs and counts the outcome of sending cp to w.
func (l *Log) cosigned(w *witnessState, cp Checkpoint, err error) {
	if err != nil {
		l.m.witnessFailed(w.Verifier.Name())
		w.fails.Log(l.log, slog.LevelWarn, "witness", "witness", w.Verifier.Name(), "size", cp.Size, "err", err)
		return
	}
	w.fails.LogEnd(l.log, "witness cosigns again")
}

// cosign sends cp to w with a consistency proof from the tree w last
// cosigned, checks the cosignature w answers with, and adds it to the
// stored checkpoint.
func (l *Log) cosign(ctx context.Context, w *witnessState, cp Checkpoint) error {
	if len(Cosigned(cp.Note, w.Verifier)) > 0 { // by this node before a restart, or by another
		w.size = cp.Size
		return nil
	}
	old := max(w.size, 0)
	// A witness that knows the log at another size says which (409), and
	// is asked again from there; once is enough, twice allows for a race
	// with another node of the log.
	for range 3 {
		if old > cp.Size {
			w.size = old // it has seen a newer checkpoint: nothing to do
			return nil
		}
		var proof tlog.TreeProof
		if old > 0 && old < cp.Size {
			p, err := tlog.ProveTree(cp.Size, old, StoreHashReader(ctx, l.store))
			if err != nil {
				return fmt.Errorf("consistency proof from %d to %d: %w", old, cp.Size, err)
			}
			proof = p
		}
		var body bytes.Buffer
		fmt.Fprintf(&body, "old %d\n", old)
		for _, h := range proof {
			fmt.Fprintf(&body, "%s\n", h)
		}
		body.WriteString("\n")
		body.Write(cp.Note)
		status, answer, err := w.post(ctx, body.Bytes())
		if err != nil {
			return err
		}
		switch status {
		case http.StatusOK:
			lines, err := checkCosignature(cp, answer, w.Verifier)
			if err != nil {
				return err
			}
			c, ok := l.store.(infertrail.Cosigner)
			if !ok {
				return fmt.Errorf("the store keeps no cosignatures")
			}
			if err := c.AddCosignatures(ctx, cp.Size, lines); err != nil {
				return err
			}
			w.size = cp.Size
			l.m.witnessed(w.Verifier.Name(), cp.Size)
			return nil
		case http.StatusConflict:
			n, err := strconv.ParseInt(strings.TrimSpace(string(answer)), 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("409 Conflict with no tree size: %q", clipText(answer))
			}
			old = n
		case http.StatusNotFound:
			return fmt.Errorf("404: the witness does not know the log %s: add it, with its verifier key, to the witness", cp.Origin)
		case http.StatusForbidden:
			return fmt.Errorf("403: the witness does not accept the log's signature: give it the log's verifier key (%s)", clipText(answer))
		case http.StatusUnprocessableEntity:
			return fmt.Errorf("422: the witness refused the consistency proof from size %d to %d: %s", old, cp.Size, clipText(answer))
		default:
			return fmt.Errorf("%d: %s", status, clipText(answer))
		}
	}
	return fmt.Errorf("the witness's tree size keeps changing (last %d)", old)
}

// post sends an add-checkpoint request to w.
func (w *witnessState) post(ctx context.Context, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(w.URL, "/")+"/add-checkpoint", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxWitnessResponse))
	if err != nil {
		return 0, nil, fmt.Errorf("read the answer: %w", err)
	}
	return resp.StatusCode, answer, nil
}

// checkCosignature checks that the signature lines a witness answered
// with hold its valid cosignature of cp, and returns that line.
func checkCosignature(cp Checkpoint, answer []byte, v note.Verifier) ([]byte, error) {
	text := CheckpointText(cp.Origin, cp.Size, cp.Root)
	n, err := note.Open(append([]byte(text+"\n"), answer...), note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("the witness's answer holds no valid cosignature by %s: %w (%q)", v.Name(), err, clipText(answer))
	}
	var lines []byte
	for _, s := range n.Sigs {
		lines = fmt.Appendf(lines, "— %s %s\n", s.Name, s.Base64)
	}
	return lines, nil
}

// clipText shortens a witness's answer for an error message.
func clipText(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// Cosigned reports the names of those of ws whose valid cosignature the
// signed checkpoint note carries.
func Cosigned(signed []byte, ws ...note.Verifier) []string {
	var names []string
	for _, v := range ws {
		if n, err := note.Open(signed, note.VerifierList(v)); err == nil && len(n.Sigs) > 0 {
			names = append(names, v.Name())
		}
	}
	return names
}
