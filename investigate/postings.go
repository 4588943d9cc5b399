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
	"unicode"
	"unicode/utf8"

	"github.com/infertrail/infertrail"
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
	var out []infertrail.Posting
	seen := map[string]bool{}
	keyer := t.keyer()
	for _, ref := range e.Content {
		v, ok := content[ref.Field]
		if !ok {
			continue
		}
		for _, w := range jsonWords(v, MaxTermsPerRecord-len(seen)) {
			k := keyer.key(w)
			if seen[k] {
				continue
			}
			seen[k] = true
			out = append(out, infertrail.Posting{Key: k, Seq: e.Seq, DataKey: ref.Key})
		}
		if len(seen) >= MaxTermsPerRecord {
			break
		}
	}
	return out
}

// jsonWords returns the words of the strings and numbers in a canonical
// JSON value (content is stored canonical), member names included.
func jsonWords(v json.RawMessage, max int) []string {
	if max <= 0 {
		return nil
	}
	var b strings.Builder
	b.Grow(len(v))
	for t := range infertrail.Texts(v) {
		b.WriteString(t)
		b.WriteByte(' ')
		if b.Len() > 1<<20 {
			break
		}
	}
	return Words(b.String(), max)
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
