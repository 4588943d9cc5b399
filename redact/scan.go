package redact

import (
	"cmp"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/infertrail/infertrail/internal/door"
)

// How a string is scanned:
//
//  1. One pass finds every keyword (case-insensitively) and one pass the
//     anchors (digit runs, IBAN starts, long token runs). Each hit opens a
//     window around it for the rules that asked for it. A string with no
//     hits, which is nearly every string, costs these two passes only.
//  2. Each rule's regex runs over its merged windows. A match that touches
//     the edge of a window that is not the edge of the string may be cut
//     short, so the rule then runs again over the whole string.
//  3. Validators, allow lists, the placeholder check of secrets and the
//     minimum entropy refuse candidates.
//  4. Matches inside an earlier redaction marker are ignored, so that
//     redacting twice changes nothing more.
//  5. Where candidates overlap, the higher priority wins, then the earlier
//     start, then the longer match.

// kwEntry is one keyword and the rules that want it.
type kwEntry struct {
	kw    string
	rules []int
}

// kwIndex finds many keywords in one pass that looks at every second
// byte. At an even i, pair has a bit for the two bytes s[i], s[i+1] (in any
// case) when a keyword may start at i or at i-1; tri then checks the
// first three bytes at each start (unless a keyword of one or two bytes
// begins with that byte), and byFirst lists the keywords to compare, by
// their lower-case first byte. One-byte keywords are found with
// strings.IndexByte.
type kwIndex struct {
	pair       [1 << 10]uint64
	tri        [1 << 10]uint64
	shortFirst [256]bool // first bytes of keywords of one or two bytes
	singles    []byte    // one-byte keywords, in both cases
	byFirst    [256][]kwEntry
	n          int
}

// triHash hashes three lower-case bytes to 16 bits.
func triHash(a, b, c byte) uint16 {
	return uint16(a)*961 ^ uint16(b)*31 ^ uint16(c)<<5
}

func testBit(bits *[1 << 10]uint64, x uint16) bool { return bits[x>>6]&(1<<(x&63)) != 0 }

func setBit(bits *[1 << 10]uint64, x uint16) { bits[x>>6] |= 1 << (x & 63) }

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func caseVariants(c byte) []byte {
	if c >= 'a' && c <= 'z' {
		return []byte{c, c - 'a' + 'A'}
	}
	return []byte{c}
}

func (k *kwIndex) add(kw string, ri int) {
	first := kw[0]
	for i, e := range k.byFirst[first] {
		if e.kw == kw {
			k.byFirst[first][i].rules = append(e.rules, ri)
			return
		}
	}
	k.byFirst[first] = append(k.byFirst[first], kwEntry{kw: kw, rules: []int{ri}})
	k.n++
	pairs := func(a, b byte) {
		for _, x := range caseVariants(a) {
			for _, y := range caseVariants(b) {
				setBit(&k.pair, uint16(x)<<8|uint16(y))
			}
		}
	}
	switch len(kw) {
	case 1:
		k.shortFirst[first] = true
		k.singles = append(k.singles, caseVariants(first)...)
		return
	case 2:
		k.shortFirst[first] = true
		for y := 0; y < 256; y++ {
			pairs(kw[1], byte(y)) // starts at i-1
		}
	default:
		setBit(&k.tri, triHash(kw[0], kw[1], kw[2]))
		pairs(kw[1], kw[2]) // starts at i-1
	}
	pairs(kw[0], kw[1]) // starts at i
}

// hasPrefixFold reports whether s begins with kw, ignoring ASCII case; kw
// is lower-case.
func hasPrefixFold(s, kw string) bool {
	if len(s) < len(kw) {
		return false
	}
	for i := 0; i < len(kw); i++ {
		if lower(s[i]) != kw[i] {
			return false
		}
	}
	return true
}

// window is where one rule's regex runs: s[lo:hi].
type window struct {
	rule   int
	lo, hi int
}

// cand is a candidate or accepted match: the secret is s[start:end].
type cand struct {
	rule       int
	prio       int
	start, end int
}

// addWindow opens a window for rule ri around s[pos:pos+n], widened by
// the rule's before and after and one byte of margin, on rune boundaries.
func (r *Redactor) addWindow(sc *scratch, ri int, s string, pos, n int) {
	for _, m := range sc.markers {
		if m[0] <= pos && pos < m[1] {
			return // a keyword or anchor inside an earlier redaction
		}
	}
	ru := r.rules[ri]
	lo, hi := pos-ru.before-1, pos+n+ru.after+1
	if lo <= 0 {
		lo = 0
	} else {
		for lo > 0 && !utf8.RuneStart(s[lo]) {
			lo--
		}
	}
	if hi >= len(s) {
		hi = len(s)
	} else {
		for hi < len(s) && !utf8.RuneStart(s[hi]) {
			hi++
		}
	}
	sc.wins = append(sc.wins, window{rule: ri, lo: lo, hi: hi})
}

// keywords opens windows at every keyword in s and returns the names rules
// (as bits of r.nameRules) whose keywords occur.
func (r *Redactor) keywords(sc *scratch, s string, open bool) uint64 {
	k := &r.kw
	var names uint64
	n := len(s)
	i := 0
	for ; i+1 < n; i += 2 {
		x := uint16(s[i])<<8 | uint16(s[i+1])
		if k.pair[x>>6]&(1<<(x&63)) == 0 {
			continue
		}
		if i > 0 {
			names |= r.tryAt(sc, s, i-1, open)
		}
		names |= r.tryAt(sc, s, i, open)
	}
	// With n odd, a two-byte keyword may still start at n-2.
	if i == n-1 && i > 0 && k.shortFirst[lower(s[i-1])] {
		names |= r.keywordAt(sc, s, i-1, open)
	}
	for _, c := range k.singles {
		for j := 0; ; j++ {
			d := strings.IndexByte(s[j:], c)
			if d < 0 {
				break
			}
			j += d
			names |= r.keywordAt(sc, s, j, open)
		}
	}
	return names
}

// tryAt looks for keywords of two or more bytes that start at s[i].
func (r *Redactor) tryAt(sc *scratch, s string, i int, open bool) uint64 {
	k := &r.kw
	c := lower(s[i])
	if k.shortFirst[c] {
		return r.keywordAt(sc, s, i, open)
	}
	if i+2 >= len(s) || !testBit(&k.tri, triHash(c, lower(s[i+1]), lower(s[i+2]))) {
		return 0
	}
	return r.keywordAt(sc, s, i, open)
}

func (r *Redactor) keywordAt(sc *scratch, s string, i int, open bool) uint64 {
	var names uint64
	for _, e := range r.kw.byFirst[lower(s[i])] {
		if !hasPrefixFold(s[i:], e.kw) {
			continue
		}
		for _, ri := range e.rules {
			if open {
				r.addWindow(sc, ri, s, i, len(e.kw))
			}
			names |= r.nameBit[ri]
		}
	}
	return names
}

// load64 reads s[i:i+8] as a little-endian word.
func load64(s string, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// hasDigit8 reports whether a byte of x is an ASCII digit: 0x2f < b < 0x3a,
// by the classic "has between" bit trick.
func hasDigit8(x uint64) bool {
	const ones, highs, low7 = 0x0101010101010101, 0x8080808080808080, 0x7f7f7f7f7f7f7f7f
	y := x & low7
	return (ones*(127+0x3a)-y)&^x&(y+ones*(127-0x2f))&highs != 0
}

// dateOrTime reports whether the digit run s[start:end] is a date
// (2026-11-26, 2026/11/26, 26.11.2026, 11/26/2026) or the end of a time
// (the "00.123456" of 10:00:00.123456), which no digits rule wants.
func dateOrTime(s string, start, end int) bool {
	if start > 0 && s[start-1] == ':' && (start+2 >= end || !isDigit(s[start+2])) {
		return true
	}
	var lens [4]int
	k, sep := 0, byte(0)
	for i := start; i < end; {
		j := i
		for j < end && isDigit(s[j]) {
			j++
		}
		if k == 3 {
			return false
		}
		lens[k] = j - i
		k++
		if j == end {
			break
		}
		if c := s[j]; c != '-' && c != '/' && c != '.' || sep != 0 && c != sep || j+1 >= end || !isDigit(s[j+1]) {
			return false
		} else {
			sep = c
		}
		i = j + 1
	}
	return k == 3 && (lens[0] == 4 && lens[1] <= 2 && lens[2] <= 2 || lens[0] <= 2 && lens[1] <= 2 && (lens[2] == 4 || lens[2] == 2))
}

func isDigitSep(c byte) bool {
	switch c {
	case ' ', '-', '.', '(', ')', '/', '+':
		return true
	}
	return false
}

// anchors opens windows at digit runs and IBAN starts for the rules with
// those anchors.
func (r *Redactor) digitAnchors(sc *scratch, s string) {
	n := len(s)
	for i := 0; i < n; {
		for i+8 <= n && !hasDigit8(load64(s, i)) {
			i += 8
		}
		for i < n && !isDigit(s[i]) {
			i++
		}
		if i >= n {
			return
		}
		start, digits, last := i, 0, i
		if len(r.ibanRules) > 0 && i >= 2 && i+1 < n && isUpper(s[i-2]) && isUpper(s[i-1]) && isDigit(s[i+1]) &&
			(i == 2 || !isAlnum(s[i-3])) {
			for _, ri := range r.ibanRules {
				r.addWindow(sc, ri, s, i-2, 4)
			}
		}
		for i < n {
			if isDigit(s[i]) {
				digits++
				i++
				last = i
				continue
			}
			j := i
			for j < n && j-i < 2 && isDigitSep(s[j]) {
				j++
			}
			if j > i && j < n && isDigit(s[j]) {
				i = j
				continue
			}
			break
		}
		if digits >= r.minDigits && !dateOrTime(s, start, last) {
			for _, ri := range r.digitRules {
				if digits >= r.rules[ri].MinDigits {
					r.addWindow(sc, ri, s, start, last-start)
				}
			}
		}
		if i < last {
			i = last
		}
	}
}

// tokenAnchors opens windows at runs of 20 or more token characters that
// mix upper case, lower case and digits. It looks at every 20th byte: a
// run that long must cover it.
func (r *Redactor) tokenAnchors(sc *scratch, s string) {
	const min = 20
	n := len(s)
	for i := 0; i+min <= n; {
		p := i + min - 1
		if tokenClass[s[p]] == 0 {
			i = p + 1
			continue
		}
		a, b := p, p+1
		for a > i && tokenClass[s[a-1]] != 0 {
			a--
		}
		for b < n && tokenClass[s[b]] != 0 {
			b++
		}
		if b-a >= min {
			var mix byte
			for _, c := range []byte(s[a:b]) {
				mix |= tokenClass[c]
			}
			if mix&classMixed == classMixed {
				for _, ri := range r.tokenRules {
					r.addWindow(sc, ri, s, a, b-a)
				}
			}
		}
		i = b + 1
	}
}

// Classes of token characters.
const (
	classSymbol = 1 << iota
	classDigit
	classUpper
	classLower
	classMixed = classDigit | classUpper | classLower
)

var tokenClass = func() (t [256]byte) {
	for c := 0; c < 256; c++ {
		switch b := byte(c); {
		case isDigit(b):
			t[c] = classDigit
		case isUpper(b):
			t[c] = classUpper
		case isLower(b):
			t[c] = classLower
		case isTokenChar(b):
			t[c] = classSymbol
		}
	}
	return t
}()

// runWindow runs rule ri over s[lo:hi] and adds its candidates. It reports
// whether a match touched a cut edge of the window, in which case the
// caller runs the rule over all of s instead.
func (r *Redactor) runWindow(sc *scratch, ri int, s string, lo, hi int) (cut bool) {
	ru := r.rules[ri]
	for _, loc := range ru.re.FindAllStringSubmatchIndex(s[lo:hi], -1) {
		if loc[0] == 0 && lo > 0 || loc[1] == hi-lo && hi < len(s) {
			return true
		}
		st, en := loc[2*ru.Group], loc[2*ru.Group+1]
		if st < 0 {
			continue
		}
		r.check(sc, ri, s, lo+st, lo+en)
	}
	return false
}

// check validates the candidate s[start:end] of rule ri and adds it.
func (r *Redactor) check(sc *scratch, ri int, s string, start, end int) {
	ru := r.rules[ri]
	if ru.valid != nil {
		var ok bool
		if start, end, ok = ru.valid(s, start, end); !ok {
			return
		}
	}
	if start >= end {
		return
	}
	r.addCand(sc, ri, s, start, end)
}

// addCand applies the checks every rule shares and adds the candidate.
func (r *Redactor) addCand(sc *scratch, ri int, s string, start, end int) {
	ru := r.rules[ri]
	v := s[start:end]
	for _, a := range ru.allow {
		if a.MatchString(v) {
			return
		}
	}
	if ru.Class == ClassSecret && placeholder(v) || ru.Entropy > 0 && entropy(v) < ru.Entropy {
		return
	}
	sc.cands = append(sc.cands, cand{rule: ri, prio: ru.Priority, start: start, end: end})
}

// maxNamedValue bounds the value that a names rule takes whole.
const maxNamedValue = 1024

// find sets sc.matches to the matches in s, in order, not overlapping.
// name is the JSON member name (or header name) whose value s is, if any,
// and names the names rules whose keywords occur in it. find returns the
// names rules whose keywords occur in s, for when s is itself a name.
func (r *Redactor) find(sc *scratch, s string, name string, names uint64) (own uint64) {
	sc.wins, sc.cands, sc.matches = sc.wins[:0], sc.cands[:0], sc.matches[:0]
	sc.markers = sc.markers[:0]
	// Agents re-send their system prompt and history in every call: a
	// string scanned before gives the same matches again. Only strings
	// whose result does not depend on a member name are remembered.
	cacheable := !sc.rescan && names == 0 && len(s) >= minCached
	if cacheable {
		if res, ok := r.seen.get(s); ok {
			sc.matches = append(sc.matches, res.matches...)
			return res.own
		}
		if r.seen.admit(s) {
			defer func() { r.seen.put(s, scanResult{own: own, matches: slices.Clone(sc.matches)}) }()
		}
	}
	if sc.rescan {
		r.markerSpans(sc, s)
	}
	if r.kw.n > 0 {
		own = r.keywords(sc, s, true)
	}
	if len(s) >= r.minAnchored {
		r.digitAnchors(sc, s)
	}
	if len(r.tokenRules) > 0 {
		r.tokenAnchors(sc, s)
	}
	for _, ri := range r.alwaysRules {
		sc.wins = append(sc.wins, window{rule: ri, lo: 0, hi: len(s)})
	}
	if len(sc.wins) > 0 {
		r.runWindows(sc, s)
	}
	if names != 0 && name != "" {
		r.findNamed(sc, s, name, names)
	}
	if len(sc.cands) == 0 {
		return own
	}
	if !sc.rescan && strings.IndexByte(s, '[') >= 0 {
		r.markerSpans(sc, s)
	}
	if len(sc.markers) > 0 {
		sc.cands = slices.DeleteFunc(sc.cands, func(c cand) bool {
			for _, m := range sc.markers {
				if c.start < m[1] && m[0] < c.end {
					return true
				}
			}
			return false
		})
	}
	r.resolve(sc)
	return own
}

func (r *Redactor) runWindows(sc *scratch, s string) {
	wins := sc.wins
	if len(wins) > 1 {
		slices.SortFunc(wins, func(a, b window) int {
			return cmp.Or(cmp.Compare(a.rule, b.rule), cmp.Compare(a.lo, b.lo))
		})
	}
	for i := 0; i < len(wins); {
		ri := wins[i].rule
		mark := len(sc.cands)
		lo, hi := wins[i].lo, wins[i].hi
		cut := false
		j := i + 1
		for ; j < len(wins) && wins[j].rule == ri; j++ {
			if wins[j].lo <= hi {
				hi = max(hi, wins[j].hi)
				continue
			}
			if !cut {
				cut = r.runWindow(sc, ri, s, lo, hi)
			}
			lo, hi = wins[j].lo, wins[j].hi
		}
		if !cut {
			cut = r.runWindow(sc, ri, s, lo, hi)
		}
		if cut {
			sc.cands = sc.cands[:mark]
			r.runWindow(sc, ri, s, 0, len(s))
		}
		i = j
	}
}

// findNamed adds the whole of s as a candidate of each names rule that
// matches name.
func (r *Redactor) findNamed(sc *scratch, s string, name string, names uint64) {
	a, b := 0, len(s)
	for a < b && (s[a] == ' ' || s[a] == '\t') {
		a++
	}
	for b > a && (s[b-1] == ' ' || s[b-1] == '\t') {
		b--
	}
	if a == b || b-a > maxNamedValue {
		return
	}
	for bit, ri := range r.nameRules {
		if names&(1<<bit) != 0 && r.rules[ri].names.MatchString(name) {
			r.addCand(sc, ri, s, a, b)
		}
	}
}

// markerRe matches what Mask and Fingerprint write.
var markerRe = regexp.MustCompile(`\[(?:redacted:([a-z0-9-]{1,64})|([a-z0-9-]{1,64}):hmac-sha256:[0-9a-f]{64})\]`)

// markerSpans sets sc.markers to the redaction markers of known detectors
// in s.
func (r *Redactor) markerSpans(sc *scratch, s string) {
	if !strings.Contains(s, "[redacted:") && !strings.Contains(s, ":hmac-sha256:") {
		return
	}
	for _, m := range markerRe.FindAllStringSubmatchIndex(s, -1) {
		id := ""
		if m[2] >= 0 {
			id = s[m[2]:m[3]]
		} else {
			id = s[m[4]:m[5]]
		}
		if r.markerIDs[id] {
			sc.markers = append(sc.markers, [2]int{m[0], m[1]})
		}
	}
}

// resolve keeps the best of overlapping candidates and orders the result.
func (r *Redactor) resolve(sc *scratch) {
	cs := sc.cands
	if len(cs) > 1 {
		slices.SortFunc(cs, func(a, b cand) int {
			return cmp.Or(cmp.Compare(b.prio, a.prio), cmp.Compare(a.start, b.start), cmp.Compare(b.end-b.start, a.end-a.start), cmp.Compare(a.rule, b.rule))
		})
	}
	ms := sc.matches[:0]
next:
	for _, c := range cs {
		for _, m := range ms {
			if c.start < m.end && m.start < c.end {
				continue next
			}
		}
		ms = append(ms, c)
	}
	if len(ms) > 1 {
		slices.SortFunc(ms, func(a, b cand) int { return cmp.Compare(a.start, b.start) })
	}
	sc.matches = ms
}

// minCached is the shortest string whose scan result is remembered.
const minCached = 48

// scanResult is what find returned for a string.
type scanResult struct {
	own     uint64
	matches []cand
}

// scanCache remembers the scan results of recent strings, exactly (keyed by
// the string itself, so no collision can hide a secret), in two
// generations of at most maxCacheBytes/2 bytes of strings each. A string
// is remembered on its second sight (admit), so that unique content costs
// no copy and no insert. It is safe for concurrent use.
type scanCache struct {
	mu       sync.RWMutex
	cur, old map[string]scanResult
	size     int
	door     door.Keeper // strings seen: admit
}

const maxCacheBytes = 16 << 20

// admit says whether s was seen before (it may be wrong, either way), and
// notes that it was seen.
func (c *scanCache) admit(s string) bool { return c.door.Again(s) }

func (c *scanCache) get(s string) (scanResult, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if r, ok := c.cur[s]; ok {
		return r, true
	}
	r, ok := c.old[s]
	return r, ok
}

func (c *scanCache) put(s string, r scanResult) {
	if len(s) > maxCacheBytes/64 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cur[s]; ok {
		return
	}
	if c.cur == nil || c.size+len(s) > maxCacheBytes/2 {
		c.old, c.cur, c.size = c.cur, make(map[string]scanResult, 1024), 0
	}
	c.cur[strings.Clone(s)] = r
	c.size += len(s)
}
