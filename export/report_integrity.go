package export

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger"
)

// cpState checks the chain of checkpoints around a period while the
// records are scanned: each checkpoint's signature, its consistency with
// the previous valid one, and how long records waited for it.
//
// A checkpoint carries no time. The received time of its last record is a
// lower bound of when it was signed, and the received time of the first
// record it newly covers is when its wait began: their difference is a
// lower bound of the longest wait for a signature, so a gap it reports is
// certain, and an idle log (no records, no checkpoints) reports none.
type cpState struct {
	prev      int64              // size of the last checkpoint of the chain checked (0: none)
	lastValid *ledger.Checkpoint // the last checkpoint whose signature verified and that is consistent
	closing   int64              // size of the first checked checkpoint covering every record of the period so far
	firstRecv int64              // received time of the period's first record
	want      map[int64]recvInfo // records whose received time the checks need
}

type recvInfo struct {
	known    bool
	received int64
	before   int64 // records of the period sequenced before this one
}

// open finds the last checkpoint at or before the scan's start and checks it.
func (c *cpState) open(ctx context.Context, b *builder, start int64) error {
	c.want = map[int64]recvInfo{}
	var found *infertrail.StoredCheckpoint
	for k := int64(1024); ; k *= 16 {
		after := max(start-k, 0)
		err := b.src.Checkpoints(ctx, after, func(sc infertrail.StoredCheckpoint) error {
			if sc.Size > start {
				return errStopScan
			}
			found = &infertrail.StoredCheckpoint{Size: sc.Size, Note: append([]byte(nil), sc.Note...)}
			return nil
		})
		if err != nil && !errors.Is(err, errStopScan) {
			return fmt.Errorf("read checkpoints: %w", err)
		}
		if found != nil || after == 0 {
			break
		}
	}
	in := &b.r.Sections.Integrity
	if found != nil {
		in.Checked++
		in.Opening = found.Size
		c.prev = found.Size
		if cp, err := c.verify(b, *found); err != nil {
			c.fail(b, found.Size, "signature", err)
		} else {
			c.lastValid = &cp
		}
	}
	if c.prev < start && c.prev < b.size {
		e, found, err := firstEntry(ctx, b.src, c.prev, c.prev+1)
		if err != nil {
			return err
		}
		c.want[c.prev] = recvInfo{known: found, received: e.Received}
	} else {
		c.want[c.prev] = recvInfo{}
	}
	return nil
}

// load returns the checkpoints of sizes in (s, e], whose last records lie
// in the chunk [s, e), and marks the records their checks need.
func (c *cpState) load(ctx context.Context, src ReportSource, s, e int64) ([]infertrail.StoredCheckpoint, error) {
	var out []infertrail.StoredCheckpoint
	err := src.Checkpoints(ctx, s, func(sc infertrail.StoredCheckpoint) error {
		if sc.Size > e {
			return errStopScan
		}
		out = append(out, infertrail.StoredCheckpoint{Size: sc.Size, Note: append([]byte(nil), sc.Note...)})
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return nil, fmt.Errorf("read checkpoints after %d: %w", s, err)
	}
	for _, sc := range out {
		if _, ok := c.want[sc.Size-1]; !ok {
			c.want[sc.Size-1] = recvInfo{}
		}
		if _, ok := c.want[sc.Size]; !ok {
			c.want[sc.Size] = recvInfo{}
		}
	}
	return out, nil
}

// see notes the received time of a scanned record the checks need.
func (c *cpState) see(e *infertrail.Entry, before int64) {
	if ri, ok := c.want[e.Seq]; ok && !ri.known {
		c.want[e.Seq] = recvInfo{known: true, received: e.Received, before: before}
	}
}

func (c *cpState) verify(b *builder, sc infertrail.StoredCheckpoint) (ledger.Checkpoint, error) {
	v := b.src.Verifier()
	cp, err := ledger.ParseCheckpoint(sc.Note, v.Name(), v)
	if err != nil {
		return cp, err
	}
	if cp.Size != sc.Size {
		return cp, fmt.Errorf("stored as size %d, but its signed text says size %d", sc.Size, cp.Size)
	}
	return cp, nil
}

func (c *cpState) fail(b *builder, size int64, check string, err error) {
	in := &b.r.Sections.Integrity
	switch check {
	case "signature":
		in.InvalidSignatures++
	default:
		in.Inconsistent++
	}
	if len(in.Failures) < MaxReportList {
		in.Failures = append(in.Failures, CheckpointFailure{Size: size, Check: check, Error: err.Error()})
	}
}

// check checks one checkpoint of the chain; the records before its size
// have been scanned.
func (c *cpState) check(ctx context.Context, b *builder, sc infertrail.StoredCheckpoint) error {
	in := &b.r.Sections.Integrity
	// The source gives every record's received time, unless it hides
	// other tenants' records: then the checkpoint is in the period when its
	// last record lies among the period's, and waits are not measured.
	last := c.want[sc.Size-1]
	in.Checked++
	switch {
	case last.known && last.received >= b.from && last.received < b.to:
		in.Checkpoints++
	case !last.known && b.r.Scan.FirstSeq >= 0 && sc.Size > b.r.Scan.FirstSeq && sc.Size-1 <= b.r.Scan.LastSeq:
		in.Checkpoints++
	}
	if b.r.Scan.FirstSeq < 0 || sc.Size <= b.r.Scan.FirstSeq {
		in.Opening = sc.Size
	}
	if cp, err := c.verify(b, sc); err != nil {
		c.fail(b, sc.Size, "signature", err)
	} else if c.lastValid == nil {
		c.lastValid = &cp
	} else {
		p, err := b.src.ConsistencyProof(ctx, c.lastValid.Size, cp.Size)
		if err == nil {
			err = tlog.CheckTree(p, cp.Size, cp.Root, c.lastValid.Size, c.lastValid.Root)
			if err != nil {
				err = fmt.Errorf("not consistent with the checkpoint of size %d: %w", c.lastValid.Size, err)
			}
		} else {
			err = fmt.Errorf("prove consistency with the checkpoint of size %d: %w", c.lastValid.Size, err)
		}
		if err != nil {
			c.fail(b, sc.Size, "consistency", err)
		} else {
			c.lastValid = &cp
		}
	}
	if first := c.want[c.prev]; first.known && last.known {
		c.wait(b, c.prev, sc.Size, first.received, last.received)
	}
	if c.closing == 0 && b.r.Scan.LastSeq >= 0 && sc.Size > b.r.Scan.LastSeq {
		c.closing = sc.Size
	}
	c.prev = sc.Size
	for seq := range c.want {
		if seq < c.prev {
			delete(c.want, seq)
		}
	}
	return nil
}

// wait records that records from to to-1, the first received at since,
// waited until at least until for the checkpoint of size to (0: none yet).
func (c *cpState) wait(b *builder, from, to int64, since, until int64) {
	if since >= b.to || until < b.from {
		return // not in the period
	}
	in := &b.r.Sections.Integrity
	w := float64(until-since) / 1e9
	if w > in.LongestWaitSeconds {
		in.LongestWaitSeconds = w
	}
	if until-since > b.r.Parameters.CheckpointMaxWait.ns() && len(in.Gaps) < MaxReportList {
		in.Gaps = append(in.Gaps, CheckpointGap{From: from, To: to, Since: time.Unix(0, since).UTC(), WaitSeconds: w})
	}
}

// close checks the first checkpoint past the scan when no checked one
// covers the period's last record, and counts the records none covers.
func (c *cpState) close(ctx context.Context, b *builder, end int64) error {
	last := b.r.Scan.LastSeq
	if last < 0 || c.prev > last {
		return nil
	}
	var next *infertrail.StoredCheckpoint
	err := b.src.Checkpoints(ctx, end, func(sc infertrail.StoredCheckpoint) error {
		next = &infertrail.StoredCheckpoint{Size: sc.Size, Note: append([]byte(nil), sc.Note...)}
		return errStopScan
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return fmt.Errorf("read checkpoints after %d: %w", end, err)
	}
	if next != nil {
		e, found, err := firstEntry(ctx, b.src, next.Size-1, next.Size)
		if err != nil {
			return err
		}
		c.want[next.Size-1] = recvInfo{known: found, received: e.Received}
		return c.check(ctx, b, *next)
	}
	return nil
}

// finish sets the integrity section's counts and status.
func (c *cpState) finish(b *builder) {
	r := b.r
	in := &r.Sections.Integrity
	in.Closing = c.closing
	if in.Gaps == nil {
		in.Gaps = []CheckpointGap{}
	}
	if in.Failures == nil {
		in.Failures = []CheckpointFailure{}
	}
	in.Status = StatusOK
	last := r.Scan.LastSeq
	if last >= 0 && c.prev <= last {
		// Records c.prev… of the period are covered by no checkpoint.
		first := c.want[c.prev]
		before := first.before
		since := first.received
		if c.prev < r.Scan.FirstSeq || !first.known {
			before, since = 0, c.firstRecv
		}
		in.Unsigned = r.Scan.Records - before
		in.Closing = 0
		wait := r.GeneratedAt.UnixNano() - since
		if wait > r.Parameters.CheckpointMaxWait.ns() && len(in.Gaps) < MaxReportList {
			in.Gaps = append(in.Gaps, CheckpointGap{From: max(c.prev, r.Scan.FirstSeq), To: 0, Since: time.Unix(0, since).UTC(), WaitSeconds: float64(wait) / 1e9})
		}
		if w := float64(wait) / 1e9; w > in.LongestWaitSeconds {
			in.LongestWaitSeconds = w
		}
	}
	switch {
	case r.Scan.Records == 0:
		in.note(StatusNoData, "No record was received in the period.")
	case in.Checked == 0:
		in.note(StatusAttention, "No signed checkpoint covers any record of the period.")
	}
	if in.InvalidSignatures > 0 {
		in.note(StatusAttention, "%d checkpoints do not verify with the log's key %s.", in.InvalidSignatures, r.Log.Origin)
	}
	if in.Inconsistent > 0 {
		in.note(StatusAttention, "%d checkpoints are not consistent with the checkpoint before them: the log was rewritten, or a checkpoint was forged.", in.Inconsistent)
	}
	if len(in.Gaps) > 0 {
		in.note(StatusAttention, "Records waited longer than %s for a signed checkpoint %d times.", r.Parameters.CheckpointMaxWait, len(in.Gaps))
	}
	if in.Unsigned > 0 {
		in.Notes = append(in.Notes, fmt.Sprintf("%d records of the period are not yet covered by a signed checkpoint.", in.Unsigned))
	}
	in.Notes = append(in.Notes, "Checkpoints are checked against each other; 'infertrail verify' also recomputes the tree from every record.")
}
