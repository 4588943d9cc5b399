package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/keys"
)

var errPageFull = errors.New("page full")

// Rewrapped sums up a rewrap run.
type Rewrapped struct {
	Keys    int // data keys now wrapped by the current KEK
	Skipped int // keys erased or rewrapped by someone else meanwhile
}

// RewrapKeys wraps every live data key that another KEK wrapped with the
// KEK's current one, after a rotation, while the log keeps running: content
// stays readable throughout (a key is replaced by compare-and-swap, and the
// data key itself never changes). Once it returns with no error, the old KEK
// wraps nothing live and can be removed. progress, if not nil, is called
// every 1,000 keys.
func RewrapKeys(ctx context.Context, s infertrail.KeyStore, kek keys.KEK, progress func(Rewrapped)) (Rewrapped, error) {
	var out Rewrapped
	current := kek.Current()
	var after infertrail.KeyID
	for {
		var batch []infertrail.DataKey
		err := s.ScanKeys(ctx, infertrail.KeyFilter{NotKEK: current}, after, func(k *infertrail.DataKey) error {
			c := *k
			c.Wrapped = append([]byte(nil), k.Wrapped...)
			batch = append(batch, c)
			if len(batch) == 1000 {
				return errPageFull
			}
			return nil
		})
		if err != nil && !errors.Is(err, errPageFull) {
			return out, fmt.Errorf("rewrap keys: %w", err)
		}
		for _, k := range batch {
			dek, err := kek.Unwrap(ctx, k.Wrapped, k.ID[:])
			if err != nil {
				return out, fmt.Errorf("rewrap key %x: %w", k.ID[:4], err)
			}
			w, err := kek.Wrap(ctx, dek, k.ID[:])
			clear(dek)
			if err != nil {
				return out, fmt.Errorf("rewrap key %x: %w", k.ID[:4], err)
			}
			by, err := keys.WrappedBy(w)
			if err != nil {
				return out, fmt.Errorf("rewrap key %x: %w", k.ID[:4], err)
			}
			ok, err := s.RewrapKey(ctx, k.ID, k.Wrapped, w, by)
			if err != nil {
				return out, err
			}
			if ok {
				out.Keys++
			} else {
				out.Skipped++
			}
			if progress != nil && (out.Keys+out.Skipped)%1000 == 0 {
				progress(out)
			}
		}
		if len(batch) < 1000 {
			return out, nil
		}
		after = batch[len(batch)-1].ID
	}
}

// LiveKeysWrappedBy counts the live data keys that the KEK id wraps: a KEK
// may be removed only when none are left.
func LiveKeysWrappedBy(ctx context.Context, s infertrail.KeyStore, id string) (int, error) {
	n := 0
	err := s.ScanKeys(ctx, infertrail.KeyFilter{Live: true}, infertrail.KeyID{}, func(k *infertrail.DataKey) error {
		if k.KEK == id {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count keys wrapped by %s: %w", id, err)
	}
	return n, nil
}
