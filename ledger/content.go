package ledger

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/internal/gens"
	"github.com/infertrail/infertrail/keys"
)

// DefaultScopeFields is the erasure scope of content when Config.ScopeFields
// is empty: tenant and session.
var DefaultScopeFields = []string{"session"}

// writeKey is a data key that the sealer encrypts new content under.
type writeKey struct {
	key       infertrail.DataKey // as stored
	cipher    *keys.Cipher
	committed atomic.Bool // the key row is known to be committed
}

type writeKeyName struct {
	scope  infertrail.Scope
	kind   infertrail.Kind
	period int64
}

// writeKeys hands out one data key per erasure scope, record kind and UTC
// day, creating keys as new scopes appear. It is safe for concurrent use.
type writeKeys struct {
	kek    keys.KEK
	fields []string

	mu   sync.Mutex
	keys gens.Map[writeKeyName, *writeKey]
}

func newWriteKeys(kek keys.KEK, fields []string) (*writeKeys, error) {
	if len(fields) == 0 {
		fields = DefaultScopeFields
	}
	if len(fields) == 1 && fields[0] == "tenant" {
		// One scope per tenant: erasure by tenant only, and content shared
		// across every session of the tenant is stored once.
		return &writeKeys{kek: kek, keys: gens.Map[writeKeyName, *writeKey]{Limit: writeKeysLimit}}, nil
	}
	for i, f := range fields {
		if !slices.Contains(infertrail.ScopeFields, f) {
			return nil, fmt.Errorf("scope field %q: want one of %v", f, infertrail.ScopeFields)
		}
		if slices.Contains(fields[:i], f) {
			return nil, fmt.Errorf("scope field %q given twice", f)
		}
	}
	// Scopes list their names in ScopeFields order.
	sorted := make([]string, 0, len(fields))
	for _, f := range infertrail.ScopeFields {
		if slices.Contains(fields, f) {
			sorted = append(sorted, f)
		}
	}
	return &writeKeys{kek: kek, fields: sorted, keys: gens.Map[writeKeyName, *writeKey]{Limit: writeKeysLimit}}, nil
}

// ScopeOf returns the erasure scope of r's content when scopes name fields.
func ScopeOf(r *infertrail.Record, fields []string) infertrail.Scope {
	var b infertrail.ScopeBuilder
	b.Add("tenant", r.Tenant)
	for _, f := range fields {
		switch f {
		case "session":
			b.Add(f, r.SessionID)
		case "user":
			b.Add(f, r.Actor.OnBehalfOf)
		case "actor":
			b.Add(f, r.Actor.ID)
		case "trace":
			b.Add(f, r.TraceID)
		}
	}
	return b.Scope()
}

// dayOf returns the start of t's UTC day in Unix seconds.
func dayOf(t time.Time) int64 {
	s := t.Unix()
	return s - ((s%86400)+86400)%86400
}

// forRecord returns the key for r's content, creating it if needed.
func (w *writeKeys) forRecord(ctx context.Context, r *infertrail.Record) (*writeKey, error) {
	name := writeKeyName{scope: ScopeOf(r, w.fields), kind: r.Kind, period: dayOf(r.Time)}
	w.mu.Lock()
	k, ok := w.keys.Get(name)
	w.mu.Unlock()
	if ok {
		return k, nil
	}
	k, err := w.create(ctx, name, r.Tenant)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if other, ok := w.keys.Get(name); ok {
		return other, nil // a concurrent call won; its key serves both
	}
	w.keys.Put(name, k, 1)
	return k, nil
}

// writeKeysLimit is how many data keys a writer keeps at hand (twice that
// at most).
const writeKeysLimit = 1 << 14

func (w *writeKeys) create(ctx context.Context, name writeKeyName, tenant string) (*writeKey, error) {
	dek, err := keys.NewDataKey()
	if err != nil {
		return nil, fmt.Errorf("new data key: %w", err)
	}
	c, err := keys.NewCipher(dek)
	if err != nil {
		return nil, fmt.Errorf("new data key: %w", err)
	}
	k := &writeKey{cipher: c, key: infertrail.DataKey{
		Tenant: tenant, Scope: name.scope, Kind: name.kind, Period: name.period,
		Created: time.Now().UnixNano(), KEK: w.kek.Current(), ErasedBy: -1,
	}}
	// Ids start with the time in milliseconds, so new keys, and the blob
	// index on key ids, grow at the end of their b-trees instead of
	// dirtying a random page per key (measured: random ids cost 2x).
	k.key.ID = keyIDAt(time.Now())
	if _, err := rand.Read(k.key.ID[6:]); err != nil {
		return nil, fmt.Errorf("new data key: %w", err)
	}
	wrapped, err := w.kek.Wrap(ctx, dek, k.key.ID[:])
	if err != nil {
		return nil, fmt.Errorf("wrap data key for %s: %w", name.scope, err)
	}
	k.key.Wrapped = wrapped
	if by, err := keys.WrappedBy(wrapped); err == nil {
		k.key.KEK = by
	}
	return k, nil
}

// forget drops every cached key, or only the given ones, so that new content
// gets new keys: after an erasure here (ids) or by another writer (all).
func (w *writeKeys) forget(ids []infertrail.KeyID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ids == nil {
		w.keys.Clear()
		return
	}
	w.keys.DeleteFunc(func(_ writeKeyName, k *writeKey) bool { return slices.Contains(ids, k.key.ID) })
}

// ContentReader decrypts stored content: it reads data keys from the store,
// unwraps them with the key-encryption key, and keeps a bounded cache of
// them. It is safe for concurrent use.
type ContentReader struct {
	store infertrail.Store
	kek   keys.KEK // nil: encrypted content cannot be opened

	mu      sync.Mutex
	ciphers gens.Map[infertrail.KeyID, *keys.Cipher]
}

// NewContentReader returns a reader of s's content. With a nil kek, only
// content stored before encryption can be read.
func NewContentReader(s infertrail.Store, kek keys.KEK) *ContentReader {
	return &ContentReader{store: s, kek: kek, ciphers: gens.Map[infertrail.KeyID, *keys.Cipher]{Limit: 1 << 14}}
}

// keyState is what a reader knows of one data key.
type keyState struct {
	cipher   *keys.Cipher // nil when erased, missing or not openable
	erasedBy int64        // ≥ 0 when erased
	missing  bool         // no such key is stored
	err      error        // it could not be unwrapped
}

// errOmitted marks a field committed but not stored by the capture profile.
var errOmitted = errors.New("committed, not stored (capture profile)")

// ErrNoKEK means that content is encrypted and no key-encryption key was
// given to open it.
var ErrNoKEK = errors.New("content is encrypted and no key-encryption key was given")

// keyStates looks up the data keys ids.
func (c *ContentReader) keyStates(ctx context.Context, ids []infertrail.KeyID) (map[infertrail.KeyID]keyState, error) {
	out := make(map[infertrail.KeyID]keyState, len(ids))
	var need []infertrail.KeyID
	c.mu.Lock()
	for _, id := range ids {
		if id.IsZero() {
			continue
		}
		if _, ok := out[id]; ok {
			continue
		}
		if ci, ok := c.ciphers.Get(id); ok {
			out[id] = keyState{cipher: ci, erasedBy: -1}
		} else {
			out[id] = keyState{missing: true, erasedBy: -1} // until read
			need = append(need, id)
		}
	}
	c.mu.Unlock()
	if len(need) == 0 {
		return out, nil
	}
	stored, err := c.store.DataKeys(ctx, need)
	if err != nil {
		return nil, err
	}
	for _, id := range need {
		k, ok := stored[id]
		switch {
		case !ok:
			out[id] = keyState{missing: true, erasedBy: -1}
		case !k.Live():
			out[id] = keyState{erasedBy: k.ErasedBy}
		case c.kek == nil:
			out[id] = keyState{erasedBy: -1, err: ErrNoKEK}
		default:
			ci, err := c.open(ctx, &k)
			out[id] = keyState{cipher: ci, erasedBy: -1, err: err}
		}
	}
	return out, nil
}

func (c *ContentReader) open(ctx context.Context, k *infertrail.DataKey) (*keys.Cipher, error) {
	dek, err := c.kek.Unwrap(ctx, k.Wrapped, k.ID[:])
	if err != nil {
		return nil, fmt.Errorf("data key %x: %w", k.ID[:4], err)
	}
	ci, err := keys.NewCipher(dek)
	if err != nil {
		return nil, fmt.Errorf("data key %x: %w", k.ID[:4], err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ciphers.Put(k.ID, ci, 1)
	return ci, nil
}

// forget drops erased keys from the cache.
func (c *ContentReader) forget(ids []infertrail.KeyID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		c.ciphers.Delete(id)
	}
}

// Read reassembles and decrypts an entry's content fields. A field whose key
// was erased is left out, and the error is then an *infertrail.ErasedError
// for the first such field, returned with the other fields.
func (c *ContentReader) Read(ctx context.Context, e *infertrail.Entry) (map[string]json.RawMessage, error) {
	if len(e.Content) == 0 {
		return nil, nil
	}
	out, erased, err := c.ReadMany(ctx, []infertrail.Entry{*e})
	if err != nil {
		return nil, err
	}
	return out[0], erased[0]
}

// ReadMany is Read for several entries, with one read of their keys and
// one of their blobs. For each entry it returns its fields and, when some
// of them were erased, the *infertrail.ErasedError Read would return; an
// error that is not an erasure fails the whole call.
func (c *ContentReader) ReadMany(ctx context.Context, es []infertrail.Entry) ([]map[string]json.RawMessage, []error, error) {
	var (
		ids  []infertrail.BlobID
		kids []infertrail.KeyID
	)
	for i := range es {
		for _, r := range es[i].Content {
			ids = append(ids, r.Blobs...)
			kids = append(kids, r.Key)
		}
	}
	out := make([]map[string]json.RawMessage, len(es))
	erased := make([]error, len(es))
	if len(kids) == 0 {
		return out, erased, nil
	}
	ks, err := c.keyStates(ctx, kids)
	if err != nil {
		return nil, nil, fmt.Errorf("read content of records %d to %d: %w", es[0].Seq, es[len(es)-1].Seq, err)
	}
	blobs, err := c.store.Blobs(ctx, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("read content of records %d to %d: %w", es[0].Seq, es[len(es)-1].Seq, err)
	}
	for i := range es {
		e := &es[i]
		if len(e.Content) == 0 {
			continue
		}
		m := make(map[string]json.RawMessage, len(e.Content))
		for _, r := range e.Content {
			if r.Omitted {
				continue // committed, never stored
			}
			v, err := assemble(r, blobs, ks, nil)
			var ee *infertrail.ErasedError
			if errors.As(err, &ee) {
				if erased[i] == nil {
					erased[i] = err
				}
				continue
			}
			if err != nil {
				return nil, nil, fmt.Errorf("read content of record %d: %w", e.Seq, err)
			}
			m[r.Field] = v
		}
		out[i] = m
	}
	return out, erased, nil
}

// ReadParts returns the decoded content of each blob of es's content
// fields, once per blob, but for the blobs skip reports (which the caller
// knows already): the elements of array fields, the whole value of the
// others. The blobs of a field whose data key was erased are left out; any
// other failure to read a blob fails the call, as in ReadMany.
func (c *ContentReader) ReadParts(ctx context.Context, es []infertrail.Entry, skip func(infertrail.BlobID) bool) (map[infertrail.BlobID][]byte, error) {
	var (
		ids  []infertrail.BlobID
		kids []infertrail.KeyID
		want = map[infertrail.BlobID]bool{}
	)
	for i := range es {
		for _, r := range es[i].Content {
			if r.Omitted {
				continue
			}
			n := len(ids)
			for _, id := range r.Blobs {
				if _, ok := want[id]; !ok {
					want[id] = !skip(id)
					if want[id] {
						ids = append(ids, id)
					}
				}
			}
			if len(ids) > n {
				kids = append(kids, r.Key)
			}
		}
	}
	out := make(map[infertrail.BlobID][]byte, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	fail := func(err error) (map[infertrail.BlobID][]byte, error) {
		return nil, fmt.Errorf("read content of records %d to %d: %w", es[0].Seq, es[len(es)-1].Seq, err)
	}
	ks, err := c.keyStates(ctx, kids)
	if err != nil {
		return fail(err)
	}
	blobs, err := c.store.Blobs(ctx, ids)
	if err != nil {
		return fail(err)
	}
	for i := range es {
		for _, r := range es[i].Content {
			if r.Omitted {
				continue
			}
			key, err := fieldKey(r, ks)
			var ee *infertrail.ErasedError
			if errors.As(err, &ee) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read content of record %d: %w", es[i].Seq, err)
			}
			for _, id := range r.Blobs {
				if _, done := out[id]; done || !want[id] {
					continue
				}
				p, err := openPart(r, id, blobs, key)
				if err != nil {
					return nil, fmt.Errorf("read content of record %d: %w", es[i].Seq, err)
				}
				out[id] = p
			}
		}
	}
	return out, nil
}

// openedParts keeps the blobs a batch of records has opened (decrypted
// and decoded), by id, so that the records of a session, which re-send
// its history with every call, open each of its elements once. Its
// values are shared: whoever takes one must not change it. Safe for
// concurrent use; a nil *openedParts keeps nothing.
type openedParts struct {
	mu sync.Mutex
	m  map[infertrail.BlobID][]byte
}

func (o *openedParts) get(id infertrail.BlobID) ([]byte, bool) {
	if o == nil {
		return nil, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	p, ok := o.m[id]
	return p, ok
}

func (o *openedParts) put(id infertrail.BlobID, p []byte) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[infertrail.BlobID][]byte{}
	}
	o.m[id] = p
}

// assemble rebuilds a content value from its blobs, taking those opened
// already from opened (which may be nil) and keeping there those it
// opens; a value of one blob is then shared with opened.
func assemble(r infertrail.ContentRef, blobs map[infertrail.BlobID]infertrail.Blob, ks map[infertrail.KeyID]keyState, opened *openedParts) ([]byte, error) {
	if r.Omitted {
		return nil, fmt.Errorf("field %q: %w", r.Field, errOmitted)
	}
	key, err := fieldKey(r, ks)
	if err != nil {
		return nil, err
	}
	parts := make([][]byte, len(r.Blobs))
	for i, id := range r.Blobs {
		if p, ok := opened.get(id); ok && blobs[id].Key == r.Key {
			parts[i] = p
			continue
		}
		if parts[i], err = openPart(r, id, blobs, key); err != nil {
			return nil, err
		}
		opened.put(id, parts[i])
	}
	if r.Array {
		return infertrail.JoinArray(nil, parts), nil
	}
	if len(parts) != 1 {
		return nil, fmt.Errorf("field %q: %d blobs for a value that is not an array", r.Field, len(parts))
	}
	return parts[0], nil
}

// fieldKey returns the state of a field's data key, or why its content
// cannot be read: an *infertrail.ErasedError when it was erased.
func fieldKey(r infertrail.ContentRef, ks map[infertrail.KeyID]keyState) (keyState, error) {
	if r.Key.IsZero() {
		return keyState{}, nil
	}
	key := ks[r.Key]
	switch {
	case key.erasedBy >= 0:
		return key, &infertrail.ErasedError{Field: r.Field, ErasedBy: key.erasedBy}
	case key.missing:
		return key, fmt.Errorf("field %q: its data key %x is missing, but no erasure record erased it", r.Field, r.Key[:4])
	case key.err != nil:
		return key, fmt.Errorf("field %q: %w", r.Field, key.err)
	}
	return key, nil
}

// openPart decrypts and decodes the blob id of field r, sealed under key.
func openPart(r infertrail.ContentRef, id infertrail.BlobID, blobs map[infertrail.BlobID]infertrail.Blob, key keyState) ([]byte, error) {
	b, ok := blobs[id]
	if !ok {
		return nil, fmt.Errorf("field %q: blob %x is missing: %w", r.Field, id[:8], infertrail.ErrNotFound)
	}
	if b.Key != r.Key {
		return nil, fmt.Errorf("field %q: blob %x is sealed under key %x, not the field's key %x", r.Field, id[:8], b.Key[:4], r.Key[:4])
	}
	if key.cipher != nil {
		plain, err := key.cipher.Open(nil, b.Data, id[:])
		if err != nil {
			return nil, fmt.Errorf("field %q: blob %x: %w", r.Field, id[:8], err)
		}
		b.Data = plain
	}
	p, err := DecodeBlob(b)
	if err != nil {
		return nil, fmt.Errorf("field %q: %w", r.Field, err)
	}
	return p, nil
}
