package investigate

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
	"io"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/internal/gens"
)

// LeafPostings returns the index keys a record's leaf gives it: its trace,
// session, actor, model, tool, tool call ids, policy result, credential
// and links. They are derived from the leaf only, so anyone who holds the
// log could compute them.
func LeafPostings(r *infertrail.Record) []string {
	var keys []string
	add := func(field, value string) {
		if value != "" {
			keys = append(keys, infertrail.IndexKey(field, value))
		}
	}
	add(infertrail.IndexTrace, r.TraceID)
	add(infertrail.IndexSession, r.SessionID)
	add(infertrail.IndexActor, r.Actor.ID)
	add(infertrail.IndexCredential, r.Actor.CredentialFingerprint)
	if m := Attr(r, "gen_ai.response.model"); m != "" {
		add(infertrail.IndexModel, m)
	}
	if m := Attr(r, "gen_ai.request.model"); m != "" && m != Attr(r, "gen_ai.response.model") {
		add(infertrail.IndexModel, m)
	}
	add(infertrail.IndexTool, Attr(r, "gen_ai.tool.name"))
	add(infertrail.IndexToolCall, Attr(r, "gen_ai.tool.call.id"))
	for _, tc := range RequestedToolCalls(r) {
		add(infertrail.IndexToolCall, tc.ID)
		add(infertrail.IndexTool, tc.Name)
	}
	add(infertrail.IndexDecision, Attr(r, "policy.result"))
	for _, l := range r.Links {
		add(infertrail.IndexLink, l.ID.String())
	}
	return dedupe(keys)
}

func dedupe(keys []string) []string {
	seen := make(map[string]bool, len(keys))
	out := keys[:0]
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// Terms turns words into the keyed index keys of full-text search. The
// index holds HMAC-SHA256 tags of words, never the words: whoever reads the
// database without the key learns which records share words, not the
// words, and erasing content deletes its tags.
type Terms struct{ key []byte }

// MaxTermsPerRecord bounds the distinct words indexed per record.
const MaxTermsPerRecord = 2048

// NewTerms returns the term hasher for a secret of at least 32 bytes. The
// search key is derived from it, so that it is never the secret itself.
func NewTerms(secret []byte) (*Terms, error) {
	if len(secret) < 32 {
		return nil, errors.New("new terms: the secret must be at least 32 bytes")
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("infertrail search terms v1"))
	return &Terms{key: m.Sum(nil)}, nil
}

// Key returns the index key of one normalised word.
func (t *Terms) Key(word string) string { return t.keyer().key(word) }

// keyer computes index keys of words, reusing one HMAC (Reset brings back
// its keyed state without hashing the key again) and its buffers.
type keyer struct {
	m   hash.Hash
	sum []byte
	buf []byte
}

func (t *Terms) keyer() *keyer { return &keyer{m: hmac.New(sha256.New, t.key)} }

func (k *keyer) key(word string) string {
	k.m.Reset()
	io.WriteString(k.m, word)
	k.sum = k.m.Sum(k.sum[:0])
	k.buf = append(append(k.buf[:0], infertrail.IndexTerm...), '=')
	k.buf = hex.AppendEncode(k.buf, k.sum[:12])
	return string(k.buf)
}

// QueryKeys returns the index keys a search for text needs: every word of
// it (AND). It returns nil when text has no word.
func (t *Terms) QueryKeys(text string) []string {
	var keys []string
	k := t.keyer()
	for _, w := range Words(text, MaxTermsPerRecord) {
		keys = append(keys, k.key(w))
	}
	return dedupe(keys)
}

// ContentPostings returns the term postings of an entry's content, each
// carrying the data key of the field it came from.
func (t *Terms) ContentPostings(e *infertrail.Entry, content map[string]json.RawMessage) []infertrail.Posting {
	k := t.keyer()
	fields := make([][]elementTerms, len(e.Content))
	for i, ref := range e.Content {
		v, ok := content[ref.Field]
		if !ok {
			continue
		}
		parts := infertrail.SplitArray(v)
		if parts == nil {
			parts = [][]byte{v}
		}
		for _, p := range parts {
			fields[i] = append(fields[i], k.element(p))
		}
	}
	return appendContentPostings(nil, e, fields, nil)
}

// elementTerms is what the index takes from one element of a content
// field (one blob: an element of an array, or a whole value): the keys of
// its distinct words, first seen first, and how much text it has.
type elementTerms struct {
	keys []string
	text int // bytes of text read, a separator after each string
}

// size estimates the bytes an elementTerms holds with its blob id, for
// the cache's bound.
func (et elementTerms) size() int {
	n := 96
	for _, k := range et.keys {
		n += 16 + len(k)
	}
	return n
}

// maxFieldText is about how much text of a field is indexed: its elements
// up to the one whose text goes past it.
const maxFieldText = 1 << 20

// element returns the terms of one content element, a canonical JSON value:
// the words of its strings and numbers, member names included, in its first
// maxFieldText bytes of text.
func (k *keyer) element(v []byte) elementTerms {
	var b strings.Builder
	b.Grow(len(v))
	for t := range infertrail.Texts(v) {
		b.WriteString(t)
		b.WriteByte(' ')
		if b.Len() > maxFieldText {
			break
		}
	}
	words := Words(b.String(), MaxTermsPerRecord)
	et := elementTerms{keys: make([]string, len(words)), text: b.Len()}
	for i, w := range words {
		et.keys[i] = k.key(w)
	}
	return et
}

// postingSets are the sets of words appendContentPostings fills for a
// record, kept from one record to the next (cleared, not made again) so
// that their tables are not grown again for each: growing them was about
// a tenth of the indexer's CPU with agent traffic.
type postingSets struct {
	seen, inField map[string]struct{}
}

// appendContentPostings appends to dst the term postings of e from the
// terms of its fields' elements (fields[i] for e.Content[i]; nil when that
// field is not indexed): field by field, the first distinct words of each,
// no more than MaxTermsPerRecord distinct words in all, each posted once.
// sets may be nil.
func appendContentPostings(dst []infertrail.Posting, e *infertrail.Entry, fields [][]elementTerms, sets *postingSets) []infertrail.Posting {
	if sets == nil {
		sets = new(postingSets)
	}
	if sets.seen == nil {
		sets.seen = make(map[string]struct{}, MaxTermsPerRecord)
		sets.inField = make(map[string]struct{}, MaxTermsPerRecord)
	}
	seen := sets.seen
	clear(seen)
	for i, ref := range e.Content {
		room := MaxTermsPerRecord - len(seen) // distinct words this field may give
		inField := sets.inField
		clear(inField)
		text := 0
	elements:
		for _, el := range fields[i] {
			for _, k := range el.keys {
				if len(inField) >= room {
					break elements
				}
				if _, ok := inField[k]; ok {
					continue
				}
				inField[k] = struct{}{}
				if _, ok := seen[k]; !ok {
					seen[k] = struct{}{}
					dst = append(dst, infertrail.Posting{Key: k, Seq: e.Seq, DataKey: ref.Key})
				}
			}
			if text += el.text; text > maxFieldText {
				break
			}
		}
		if len(seen) >= MaxTermsPerRecord {
			break
		}
	}
	return dst
}

// termCache keeps the terms of recently indexed content elements by blob
// id, in two generations of about limit/2 bytes each: agent traffic
// re-sends its system prompt, tool schemas and history with every call, and
// each repeat of an element is then neither read, decrypted nor hashed
// again. A blob id names one content under one data key, so an entry
// cannot go stale; after an erasure the store drops the postings of the
// erased key (infertrail.Index.AddPostings).
type termCache struct {
	mu sync.Mutex
	m  gens.Map[infertrail.BlobID, elementTerms]
}

func newTermCache(limit int) *termCache {
	return &termCache{m: gens.Map[infertrail.BlobID, elementTerms]{Limit: limit / 2, Cost: elementTerms.size}}
}

func (c *termCache) get(id infertrail.BlobID) (elementTerms, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m.Get(id)
}

func (c *termCache) put(id infertrail.BlobID, et elementTerms) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m.Put(id, et, et.size())
}

// Words splits text into normalised search words: lowercase runs of
// letters and digits, and whole whitespace-separated tokens with inner
// punctuation (an e-mail address, an id such as call_7f3a), from 2 to 64
// bytes, each once, at most max of them.
func Words(text string, max int) []string {
	var out []string
	seen := map[string]bool{}
	add := func(w string) bool {
		if len(w) < 2 || len(w) > 64 || seen[w] || !utf8.ValidString(w) {
			return len(out) < max
		}
		seen[w] = true
		out = append(out, w)
		return len(out) < max
	}
	for _, tok := range strings.Fields(text) {
		tok = strings.ToLower(strings.TrimFunc(tok, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }))
		if tok == "" {
			continue
		}
		parts := strings.FieldsFunc(tok, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
		if len(parts) > 1 && !add(tok) {
			return out
		}
		for _, p := range parts {
			if !add(p) {
				return out
			}
		}
	}
	return out
}
