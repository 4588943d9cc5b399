package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/infertrail/infertrail"
)

// Erasure asks for content to be crypto-shredded.
type Erasure struct {
	// Scope selects what to erase: tenant, and any of the scope fields the
	// log keys content by (tenant=acme erases the whole tenant's content).
	Scope infertrail.Scope
	// Reason says why (required), such as "GDPR Art. 17 request 2026-113".
	Reason string
	// Authority names who or what authorised it, if not the actor alone
	// (a ticket, a DPO decision).
	Authority string
	// Actor is who asked.
	Actor infertrail.Actor
	// Source is the capture path of the erasure record (default "erase").
	Source string
}

// Erased says what an erasure did.
type Erased struct {
	Seq   int64           // sequence number of the erasure record
	ID    infertrail.UUID // its id
	Keys  int             // data keys destroyed
	Blobs int64           // stored blobs deleted
}

// MaxReasonLen bounds an erasure's or a hold's reason and authority.
const MaxReasonLen = 1024

// Erase crypto-shreds the content of every scope the selector covers, in one
// transaction with the erasure record that says so: who, when, which scope,
// why and on whose authority. Leaves, tree hashes and checkpoints are left
// as they are, so the log still verifies; the erased records' content reads
// as erased by the erasure record. If any content in the selector's reach is
// under an active legal hold, nothing is erased and the error wraps
// infertrail.ErrHeld and names the hold.
func (l *Log) Erase(ctx context.Context, e Erasure) (Erased, error) {
	sel, err := infertrail.ParseScope(string(e.Scope))
	if err != nil {
		return Erased{}, fmt.Errorf("erase: %w", err)
	}
	if err := l.checkSelector(sel); err != nil {
		return Erased{}, fmt.Errorf("erase: %w", err)
	}
	if err := checkReason("reason", e.Reason, true); err != nil {
		return Erased{}, fmt.Errorf("erase: %w", err)
	}
	if err := checkReason("authority", e.Authority, false); err != nil {
		return Erased{}, fmt.Errorf("erase: %w", err)
	}
	attrs := map[string]any{
		"erasure.scope":   string(sel),
		"erasure.reason":  e.Reason,
		"erasure.trigger": "request",
	}
	if e.Authority != "" {
		attrs["erasure.authority"] = e.Authority
	}
	// Find the scope's keys without holding the log's write lock (a
	// tenant's keys may be many), then, under the lock, the keys created
	// since (key ids start with their creation time; the margin covers
	// clock differences between nodes and keys created just before the
	// scan that committed after it).
	tenant := sel.Tenant()
	from := keyIDAt(l.cfg.Now().Add(-eraseMargin))
	var found []infertrail.KeyID
	err = l.store.ScanKeys(ctx, infertrail.KeyFilter{Tenant: tenant, ScopePrefix: l.scopePrefix(sel), Live: true}, infertrail.KeyID{},
		func(k *infertrail.DataKey) error {
			if sel.Covers(k.Scope) {
				found = append(found, k.ID)
			}
			return nil
		})
	if err != nil {
		return Erased{}, fmt.Errorf("erase: find keys: %w", err)
	}
	if testHookAfterEraseScan != nil {
		testHookAfterEraseScan()
	}
	return l.erase(ctx, tenant, e.Actor, e.Source, attrs, func(ctx context.Context, tx infertrail.AppendTx) ([]infertrail.KeyID, error) {
		holds, err := tx.Holds(ctx, tenant)
		if err != nil {
			return nil, err
		}
		for _, h := range holds {
			if h.Scope.Overlaps(sel) {
				return nil, fmt.Errorf("erase %s: content in it is under legal hold %s (%s, placed by %s on %s); release the hold first: %w",
					sel, h.ID, h.Reason, h.CreatedBy, time.Unix(0, h.Created).UTC().Format(time.RFC3339), infertrail.ErrHeld)
			}
		}
		recent, err := tx.Keys(ctx, infertrail.KeyFilter{Tenant: tenant, IDFrom: from, Live: true})
		if err != nil {
			return nil, err
		}
		ids := slices.Clone(found)
		for _, k := range recent {
			if sel.Covers(k.Scope) && !slices.Contains(found, k.ID) {
				ids = append(ids, k.ID)
			}
		}
		return ids, nil
	})
}

// testHookAfterEraseScan, when set by a test, runs between an erasure's
// search without the lock and its transaction.
var testHookAfterEraseScan func()

// eraseMargin is how far back, under the write lock, an erasure looks for
// keys created while it searched without the lock.
const eraseMargin = 2 * time.Minute

// keyIDAt returns the least key id created at t.
func keyIDAt(t time.Time) infertrail.KeyID {
	var id infertrail.KeyID
	ms := uint64(max(t.UnixMilli(), 0))
	for i := range 6 {
		id[i] = byte(ms >> (40 - 8*i))
	}
	return id
}

// erase appends an erasure record with attrs and, in the same transaction,
// erases the keys that pick returns (reading under the log's write lock).
// A pick that returns errNothingToErase rolls everything back.
func (l *Log) erase(ctx context.Context, tenant string, actor infertrail.Actor, source string, attrs map[string]any,
	pick func(ctx context.Context, tx infertrail.AppendTx) ([]infertrail.KeyID, error)) (Erased, error) {
	if source == "" {
		source = "erase"
	}
	r := &infertrail.Record{Kind: infertrail.KindErasure, Tenant: tenant, Actor: actor, Source: source,
		Attributes: map[string]json.RawMessage{}}
	for k, v := range attrs {
		b, err := canonicalValue(v)
		if err != nil {
			return Erased{}, fmt.Errorf("erase: attribute %s: %w", k, err)
		}
		r.Attributes[k] = b
	}
	if err := r.Validate(l.cfg.Limits); err != nil {
		return Erased{}, fmt.Errorf("erase: %w", err)
	}
	r.ID = infertrail.NewUUID()
	r.ReceivedTime = l.cfg.Now().UTC()
	r.Time = r.ReceivedTime
	s, err := l.sealer.seal(ctx, r, l.sealer.identify(r, nil), false)
	if err != nil {
		return Erased{}, fmt.Errorf("erase: %w", err)
	}
	var out Erased
	var erased []infertrail.KeyID
	req := &request{ctx: ctx, items: []*sealed{s}, done: make(chan struct{}),
		hook: func(ctx context.Context, tx infertrail.AppendTx, res []Result) error {
			ids, err := pick(ctx, tx)
			if err != nil {
				return err
			}
			if len(ids) == 0 && source == retentionSource {
				return errNothingToErase
			}
			n, err := tx.Erase(ctx, ids, res[0].Seq)
			if err != nil {
				return fmt.Errorf("erase %d data keys: %w", len(ids), err)
			}
			out.Keys, out.Blobs, erased = len(ids), n, ids
			return nil
		}}
	res, err := l.submit(ctx, req)
	if err != nil {
		return Erased{}, err
	}
	l.keys.forget(erased)
	l.content.forget(erased)
	out.Seq, out.ID = res[0].Seq, res[0].ID
	l.log.Info("erased content", "record", out.Seq, "tenant", tenant, "keys", out.Keys, "blobs", out.Blobs, "source", source)
	return out, nil
}

// errNothingToErase is what a retention pick returns when every key it
// found is held or already gone.
var errNothingToErase = errors.New("nothing to erase")

func checkReason(field, s string, required bool) error {
	switch {
	case required && strings.TrimSpace(s) == "":
		return fmt.Errorf("a %s is required: %w", field, infertrail.ErrInvalid)
	case len(s) > MaxReasonLen:
		return fmt.Errorf("the %s is %d bytes, more than %d: %w", field, len(s), MaxReasonLen, infertrail.ErrTooLarge)
	}
	return nil
}

// scopePrefix returns the longest prefix that every scope sel covers
// starts with, for an index range on key scopes.
func (l *Log) scopePrefix(sel infertrail.Scope) string {
	pairs := sel.Pairs()
	var b infertrail.ScopeBuilder
	b.Add(pairs[0][0], pairs[0][1])
	have := map[string]string{}
	for _, p := range pairs[1:] {
		have[p[0]] = p[1]
	}
	for _, f := range l.keys.fields {
		v, ok := have[f]
		if !ok {
			break
		}
		b.Add(f, v)
	}
	prefix := string(b.Scope())
	if len(pairs) == 1 || strings.Count(prefix, ",") < len(pairs)-1 {
		// Not every pair is in the prefix: the scopes continue past it.
		return prefix + ","
	}
	return prefix
}

// canonicalValue encodes v as RFC 8785 canonical JSON.
func canonicalValue(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return infertrail.Canonicalize(b)
}
