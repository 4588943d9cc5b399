package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/infertrail/infertrail"
)

// RetentionRule says how long content is kept: for one tenant ("" for
// every tenant) and one record kind ("" for every kind). The most specific
// rule that matches a record applies: tenant and kind, then tenant, then
// kind, then neither. Retention applies to content only: leaves, tree
// hashes and checkpoints are kept for the life of the log.
type RetentionRule struct {
	Tenant  string
	Kind    infertrail.Kind
	Content time.Duration // 0 keeps content for ever
}

// rule returns the rule that applies to tenant and kind.
func rule(rules []RetentionRule, tenant string, kind infertrail.Kind) (RetentionRule, bool) {
	best, rank, found := RetentionRule{}, -1, false
	for _, r := range rules {
		if (r.Tenant != "" && r.Tenant != tenant) || (r.Kind != "" && r.Kind != kind) {
			continue
		}
		n := 0
		if r.Tenant != "" {
			n += 2
		}
		if r.Kind != "" {
			n++
		}
		if n > rank {
			best, rank, found = r, n, true
		}
	}
	return best, found && best.Content > 0
}

// CheckRetention validates rules: durations are at least one day, and no
// two rules have the same tenant and kind.
func CheckRetention(rules []RetentionRule) error {
	seen := map[[2]string]bool{}
	for i, r := range rules {
		if r.Content != 0 && r.Content < 24*time.Hour {
			return fmt.Errorf("retention rule %d: content %s is less than a day (keys cover a day each): %w", i, r.Content, infertrail.ErrInvalid)
		}
		if r.Content < 0 {
			return fmt.Errorf("retention rule %d: negative duration: %w", i, infertrail.ErrInvalid)
		}
		if r.Kind != "" && !r.Kind.Valid() {
			return fmt.Errorf("retention rule %d: unknown kind %q: %w", i, r.Kind, infertrail.ErrInvalid)
		}
		k := [2]string{r.Tenant, string(r.Kind)}
		if seen[k] {
			return fmt.Errorf("retention rule %d: a second rule for tenant %q, kind %q: %w", i, r.Tenant, r.Kind, infertrail.ErrInvalid)
		}
		seen[k] = true
	}
	return nil
}

// Expired sums up one retention run.
type Expired struct {
	Erasures int   // erasure records appended
	Keys     int   // data keys destroyed
	Blobs    int64 // blobs deleted
	Held     int   // expired keys kept because of a legal hold
}

// retentionSource is the capture source of erasure records that retention appends.
const retentionSource = "retention"

// Expire shreds the content that rules say is past its retention at now:
// for each tenant and kind with expired content, one erasure record
// (trigger "retention"), in the same transaction as the erasure. Content
// under an active legal hold is kept and counted in Held. progress, if not
// nil, is called after each erasure with the totals so far.
func (l *Log) Expire(ctx context.Context, rules []RetentionRule, now time.Time, progress func(Expired)) (Expired, error) {
	var out Expired
	if err := CheckRetention(rules); err != nil {
		return out, err
	}
	shortest := time.Duration(0)
	for _, r := range rules {
		if r.Content > 0 && (shortest == 0 || r.Content < shortest) {
			shortest = r.Content
		}
	}
	if shortest == 0 {
		return out, nil
	}
	// A key covers one UTC day: its content is expired once the day's end
	// plus the retention is past. The keys are found without the log's write
	// lock (this reads every live key older than the shortest retention);
	// each erasure then takes the lock for a chunk of them only.
	type group struct {
		tenant string
		kind   infertrail.Kind
	}
	type expiring struct {
		id    infertrail.KeyID
		scope infertrail.Scope
	}
	found := map[group][]expiring{}
	var order []group
	err := l.store.ScanKeys(ctx, infertrail.KeyFilter{Live: true, PeriodBefore: cutoff(now, shortest)}, infertrail.KeyID{}, func(k *infertrail.DataKey) error {
		r, ok := rule(rules, k.Tenant, k.Kind)
		if !ok || k.Period >= cutoff(now, r.Content) {
			return nil
		}
		g := group{k.Tenant, k.Kind}
		if _, seen := found[g]; !seen {
			order = append(order, g)
		}
		found[g] = append(found[g], expiring{k.ID, k.Scope})
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("expire content: %w", err)
	}
	for _, g := range order {
		r, _ := rule(rules, g.tenant, g.kind)
		var b infertrail.ScopeBuilder
		b.Add("tenant", g.tenant)
		attrs := map[string]any{
			"erasure.scope":   string(b.Scope()),
			"erasure.kind":    string(g.kind),
			"erasure.before":  time.Unix(cutoff(now, r.Content), 0).UTC().Format(time.RFC3339),
			"erasure.reason":  fmt.Sprintf("retention: %s content is kept %s", g.kind, formatDays(r.Content)),
			"erasure.trigger": "retention",
		}
		for chunk := range slices.Chunk(found[g], maxExpireKeys) {
			held := 0
			res, err := l.erase(ctx, g.tenant, infertrail.Actor{ID: "infertrail:retention", Type: "service"}, retentionSource, attrs,
				func(ctx context.Context, tx infertrail.AppendTx) ([]infertrail.KeyID, error) {
					holds, err := tx.Holds(ctx, g.tenant)
					if err != nil {
						return nil, err
					}
					held = 0
					ids := make([]infertrail.KeyID, 0, len(chunk))
				keys:
					for _, k := range chunk {
						for _, h := range holds {
							if h.Scope.Covers(k.scope) {
								held++
								continue keys
							}
						}
						ids = append(ids, k.id)
					}
					return ids, nil
				})
			out.Held += held
			if errors.Is(err, errNothingToErase) {
				continue
			}
			if err != nil {
				return out, fmt.Errorf("expire %s content of tenant %q: %w", g.kind, g.tenant, err)
			}
			out.Erasures++
			out.Keys += res.Keys
			out.Blobs += res.Blobs
			if progress != nil {
				progress(out)
			}
		}
	}
	return out, nil
}

// maxExpireKeys bounds the keys one retention erasure destroys, and so how
// long it holds the log's write lock.
const maxExpireKeys = 10000

// cutoff returns the period before which keys are expired at now under a
// retention of d: a key's day must have ended d before now.
func cutoff(now time.Time, d time.Duration) int64 {
	return dayOf(now.Add(-d)) // keys of that day end after now-d: not yet
}

func formatDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}
