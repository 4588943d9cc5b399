package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/infertrail/infertrail"
)

// PlaceHold puts content in scope under a legal hold: neither an erasure
// request nor retention can erase it until the hold is released. The hold
// is recorded in the log as an access record (action "hold.add").
func (l *Log) PlaceHold(ctx context.Context, scope infertrail.Scope, reason string, actor infertrail.Actor) (infertrail.Hold, error) {
	sel, err := infertrail.ParseScope(string(scope))
	if err != nil {
		return infertrail.Hold{}, fmt.Errorf("place hold: %w", err)
	}
	if err := l.checkSelector(sel); err != nil {
		return infertrail.Hold{}, fmt.Errorf("place hold: %w", err)
	}
	if err := checkReason("reason", reason, true); err != nil {
		return infertrail.Hold{}, fmt.Errorf("place hold: %w", err)
	}
	h := infertrail.Hold{ID: infertrail.NewUUID(), Tenant: sel.Tenant(), Scope: sel, Reason: reason,
		CreatedBy: actorName(actor), Created: l.cfg.Now().UnixNano()}
	if err := l.store.AddHold(ctx, h); err != nil {
		return infertrail.Hold{}, fmt.Errorf("place hold: %w", err)
	}
	if err := l.recordAdmin(ctx, h.Tenant, actor, "hold.add", map[string]any{
		"hold.id": h.ID.String(), "hold.scope": string(sel), "hold.reason": reason,
	}); err != nil {
		return h, fmt.Errorf("place hold %s: the hold is in force, but recording it failed: %w", h.ID, err)
	}
	return h, nil
}

// ReleaseHold releases the tenant's hold with the id, and records that as an
// access record (action "hold.release").
func (l *Log) ReleaseHold(ctx context.Context, tenant string, id infertrail.UUID, reason string, actor infertrail.Actor) error {
	if err := checkReason("reason", reason, false); err != nil {
		return fmt.Errorf("release hold: %w", err)
	}
	if err := l.store.ReleaseHold(ctx, tenant, id, actorName(actor), l.cfg.Now().UnixNano()); err != nil {
		return err
	}
	attrs := map[string]any{"hold.id": id.String()}
	if reason != "" {
		attrs["hold.reason"] = reason
	}
	if err := l.recordAdmin(ctx, tenant, actor, "hold.release", attrs); err != nil {
		return fmt.Errorf("release hold %s: the hold is released, but recording it failed: %w", id, err)
	}
	return nil
}

// Holds returns the tenant's holds ("" for every tenant), oldest first.
func (l *Log) Holds(ctx context.Context, tenant string, active bool) ([]infertrail.Hold, error) {
	return l.store.Holds(ctx, tenant, active)
}

// checkSelector refuses a selector naming a field content is not keyed by:
// it could never select anything.
func (l *Log) checkSelector(sel infertrail.Scope) error {
	for _, p := range sel.Pairs()[1:] {
		found := false
		for _, f := range l.keys.fields {
			found = found || f == p[0]
		}
		if !found {
			keyed := "tenant alone"
			if len(l.keys.fields) > 0 {
				keyed = "tenant and " + strings.Join(l.keys.fields, ", ")
			}
			return fmt.Errorf("scope %s: content is keyed by %s, not by %s: %w", sel, keyed, p[0], infertrail.ErrInvalid)
		}
	}
	return nil
}

// recordAdmin appends an access record of an administrative action.
func (l *Log) recordAdmin(ctx context.Context, tenant string, actor infertrail.Actor, action string, attrs map[string]any) error {
	r := &infertrail.Record{Kind: infertrail.KindAccess, Tenant: tenant, Actor: actor, Source: "admin",
		Attributes: map[string]json.RawMessage{"access.action": infertrail.AppendString(nil, action)}}
	for k, v := range attrs {
		b, err := canonicalValue(v)
		if err != nil {
			return fmt.Errorf("attribute %s: %w", k, err)
		}
		r.Attributes[k] = b
	}
	_, err := l.Record(infertrail.WithReserve(ctx), r)
	return err
}

func actorName(a infertrail.Actor) string {
	if a.ID != "" {
		return a.ID
	}
	if a.CredentialFingerprint != "" {
		return a.CredentialFingerprint
	}
	return "unknown"
}
