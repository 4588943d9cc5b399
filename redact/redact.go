// Package redact finds secrets and personal data in captured content and
// masks, fingerprints or drops them before anything is stored or hashed.
//
// Detectors are rules, kept as data: an embedded YAML file
// (rules/default.yaml) that a user can replace or extend with LoadRules.
// Each rule is a Go regular expression behind a cheap prefilter (keywords,
// or a built-in anchor such as a run of digits), with optional validators
// written in Go (Luhn, IBAN mod-97, JWT header, entropy, …). A Redactor
// applies a rule set to canonical JSON content values and to plain strings
// such as header values; findings name the detector, never the value.
// See docs/redaction.md for the detectors, their precedence and limits.
package redact

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/infertrail/infertrail"
)

// Action is what happens to a detected value.
type Action string

// The actions.
const (
	Keep        Action = "keep"        // leave the value (it is stored encrypted anyway); still reported as a finding
	Mask        Action = "mask"        // replace the match with "[redacted:<detector id>]"
	Fingerprint Action = "fingerprint" // replace the match with "[<detector id>:hmac-sha256:<hex>]" so equal values still correlate
	Drop        Action = "drop"        // drop the whole content field (Redact returns a nil value)
)

func (a Action) valid() bool {
	switch a {
	case Keep, Mask, Fingerprint, Drop:
		return true
	}
	return false
}

// Config configures a Redactor. The zero Config uses the default rules and
// actions, and needs only FingerprintSecret.
type Config struct {
	// FingerprintSecret keys fingerprints; required (at least MinSecretLen
	// bytes) when any effective action is Fingerprint, as it is for secrets
	// by default. Use the secret the LLM gateway uses, so that a key's
	// fingerprint in content equals the actor.credential_fingerprint of the
	// gateway's records.
	FingerprintSecret []byte
	// Rules replaces the embedded default rule set when non-nil (see
	// LoadRules, DefaultRules and Rules.Merge).
	Rules *Rules
	// Disable lists detector ids to switch off.
	Disable []string
	// Actions sets the action per detector id or per class ("secret",
	// "pii"); a detector id wins over its class. Defaults: a rule's own
	// action, else secret → fingerprint and pii → mask. In the default
	// rules, card and iban mask, and email and phone keep.
	Actions map[string]Action
	// Fields overrides Actions per content field name (such as
	// "gen_ai.input.messages" or "tool.arguments"), with the same keys.
	// Resolution, first found wins: Fields[field][id],
	// Fields[field][class], Actions[id], Actions[class], the rule's
	// action, the class default.
	Fields map[string]map[string]Action
}

// LogValue keeps the fingerprint secret out of logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Bool("fingerprint_secret_set", len(c.FingerprintSecret) > 0),
		slog.Any("disable", c.Disable),
		slog.Any("actions", c.Actions),
		slog.Any("fields", c.Fields),
	)
}

// Finding reports how often one detector matched in one field, and what
// was done. It never holds the matched value.
type Finding struct {
	Field    string `json:"field"`
	Detector string `json:"detector"`
	Class    string `json:"class"` // secret or pii
	Count    int    `json:"count"`
	Action   Action `json:"action"`
}

// Redactor applies a rule set. It is immutable and safe for concurrent use.
type Redactor struct {
	rules       []*rule // the enabled rules
	kw          kwIndex
	digitRules  []int
	minDigits   int // the least MinDigits of digitRules
	minAnchored int // the shortest string digitAnchors can find anything in
	ibanRules   []int
	tokenRules  []int
	alwaysRules []int
	nameRules   []int    // rules with names, at most 64
	nameBit     []uint64 // per rule: its bit among nameRules, or 0
	acts        []Action // per rule, for a field without overrides
	fields      map[string][]Action
	fp          *Fingerprinter
	markerIDs   map[string]bool // every id of the rule set, enabled or not
	pool        sync.Pool       // of *scratch
	seen        scanCache       // results of strings scanned recently
}

func configErr(format string, args ...any) error {
	return fmt.Errorf("new redactor: "+format+": %w", append(args, infertrail.ErrInvalid)...)
}

// New validates cfg and returns a Redactor. Unknown detector ids, classes
// and actions are errors that name them.
func New(cfg Config) (*Redactor, error) {
	rs := cfg.Rules
	if rs == nil {
		rs = DefaultRules()
	}
	known := map[string]*rule{}
	r := &Redactor{markerIDs: map[string]bool{}, fields: map[string][]Action{}}
	for _, ru := range rs.list {
		known[ru.ID] = ru
		r.markerIDs[ru.ID] = true
	}
	off := map[string]bool{}
	for _, id := range cfg.Disable {
		if known[id] == nil {
			return nil, configErr("disable: unknown detector %q", id)
		}
		off[id] = true
	}
	checkKeys := func(where string, m map[string]Action) error {
		for _, k := range slices.Sorted(mapKeys(m)) {
			if k != ClassSecret && k != ClassPII && known[k] == nil {
				return configErr("%s: unknown detector or class %q", where, k)
			}
			if !m[k].valid() {
				return configErr("%s[%q]: unknown action %q (want keep, mask, fingerprint or drop)", where, k, m[k])
			}
		}
		return nil
	}
	if err := checkKeys("actions", cfg.Actions); err != nil {
		return nil, err
	}
	for _, f := range slices.Sorted(mapKeys(cfg.Fields)) {
		if f == "" {
			return nil, configErr("fields: empty field name")
		}
		if err := checkKeys("fields["+strconv.Quote(f)+"]", cfg.Fields[f]); err != nil {
			return nil, err
		}
	}
	for _, ru := range rs.list {
		if !off[ru.ID] {
			r.rules = append(r.rules, ru)
		}
	}
	actionOf := func(ru *rule, fm map[string]Action) Action {
		for _, m := range []map[string]Action{fm, cfg.Actions} {
			if a, ok := m[ru.ID]; ok {
				return a
			}
			if a, ok := m[ru.Class]; ok {
				return a
			}
		}
		if ru.Action != "" {
			return ru.Action
		}
		if ru.Class == ClassSecret {
			return Fingerprint
		}
		return Mask
	}
	needFP := ""
	r.acts = make([]Action, len(r.rules))
	for i, ru := range r.rules {
		r.acts[i] = actionOf(ru, nil)
		if r.acts[i] == Fingerprint && needFP == "" {
			needFP = fmt.Sprintf("detector %s", ru.ID)
		}
	}
	for _, f := range slices.Sorted(mapKeys(cfg.Fields)) {
		acts := make([]Action, len(r.rules))
		for i, ru := range r.rules {
			acts[i] = actionOf(ru, cfg.Fields[f])
			if acts[i] == Fingerprint && needFP == "" {
				needFP = fmt.Sprintf("detector %s in field %s", ru.ID, f)
			}
		}
		r.fields[f] = acts
	}
	switch {
	case len(cfg.FingerprintSecret) > 0 || needFP != "":
		fp, err := NewFingerprinter(cfg.FingerprintSecret)
		if err != nil {
			if needFP != "" {
				return nil, configErr("fingerprint secret: %s uses action fingerprint, which needs a secret of at least %d bytes (have %d)", needFP, MinSecretLen, len(cfg.FingerprintSecret))
			}
			return nil, configErr("fingerprint secret: %d bytes, want at least %d", len(cfg.FingerprintSecret), MinSecretLen)
		}
		r.fp = fp
	}
	r.nameBit = make([]uint64, len(r.rules))
	for i, ru := range r.rules {
		for _, k := range ru.Keywords {
			r.kw.add(k, i)
		}
		switch ru.Anchor {
		case AnchorDigits:
			r.digitRules = append(r.digitRules, i)
			if r.minDigits == 0 || ru.MinDigits < r.minDigits {
				r.minDigits = ru.MinDigits
			}
		case AnchorIBAN:
			r.ibanRules = append(r.ibanRules, i)
		case AnchorToken:
			r.tokenRules = append(r.tokenRules, i)
		default:
			if len(ru.Keywords) == 0 {
				r.alwaysRules = append(r.alwaysRules, i)
			}
		}
		if ru.names != nil {
			if len(r.nameRules) == 64 {
				return nil, configErr("rules: more than 64 rules have names")
			}
			if len(ru.Keywords) == 0 {
				return nil, configErr("rule %s: names needs keywords, to choose the member names worth matching", ru.ID)
			}
			r.nameBit[i] = 1 << len(r.nameRules)
			r.nameRules = append(r.nameRules, i)
		}
	}
	r.minAnchored = math.MaxInt
	if len(r.digitRules) > 0 {
		r.minAnchored = r.minDigits
	}
	if len(r.ibanRules) > 0 {
		r.minAnchored = min(r.minAnchored, minIBAN)
	}
	n := len(r.rules)
	r.pool.New = func() any { return &scratch{counts: make([]int, n)} }
	return r, nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// scratch is the per-call working memory, pooled.
type scratch struct {
	wins    []window
	cands   []cand
	matches []cand
	edits   []edit
	repl    []byte   // canonical replacement strings of edits
	tmp     []byte   // the redacted text of one string
	prev    []byte   // the previous round's text, in replace
	dec     []byte   // a decoded string value
	key     []byte   // a decoded member name
	markers [][2]int // spans of redaction markers in the string being scanned
	rescan  bool     // scanning replace's own result: look for markers first
	counts  []int    // matches per rule
	hit     []int    // rules with counts > 0, in order of first match
}

// edit replaces the string literal in[start:end] with repl[off:off+n].
type edit struct {
	start, end int
	off, n     int
	depth      int    // of the object whose member name this is; 0 for values
	name       string // the new member name, for member names
}

func (r *Redactor) get() *scratch { return r.pool.Get().(*scratch) }

func (r *Redactor) put(sc *scratch) {
	for _, ri := range sc.hit {
		sc.counts[ri] = 0
	}
	sc.hit, sc.edits = sc.hit[:0], sc.edits[:0]
	for _, b := range []*[]byte{&sc.repl, &sc.tmp, &sc.prev, &sc.dec, &sc.key} {
		if cap(*b) > 1<<16 {
			*b = nil
		} else {
			*b = (*b)[:0]
		}
	}
	r.pool.Put(sc)
}

func (r *Redactor) actionsFor(field string) []Action {
	if len(r.fields) > 0 {
		if a, ok := r.fields[field]; ok {
			return a
		}
	}
	return r.acts
}

func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// maxRounds bounds how often replace scans its own result again.
const maxRounds = 3

// replace counts the matches of s (in sc.matches) and writes s with them
// handled to sc.tmp. It reports whether the text changed and whether an
// action is Drop.
//
// A candidate that lost to an overlapping match can leave a part outside
// it that reads differently once the winner is a marker ("key=abc+" before
// a token). So a changed text is scanned again, and new detections other
// than Keep are handled too, until nothing changes: redacting the result
// once more then finds nothing new.
func (r *Redactor) replace(sc *scratch, acts []Action, s string) (changed, drop bool) {
	if changed, drop = r.replaceOnce(sc, acts, s); !changed || drop {
		return changed, drop
	}
	for range maxRounds {
		sc.tmp, sc.prev = sc.prev, sc.tmp
		s = unsafeString(sc.prev)
		sc.rescan = true
		r.find(sc, s, "", 0)
		sc.rescan = false
		sc.matches = slices.DeleteFunc(sc.matches, func(m cand) bool { return acts[m.rule] == Keep })
		if len(sc.matches) == 0 {
			sc.tmp, sc.prev = sc.prev, sc.tmp
			return true, false
		}
		if _, drop := r.replaceOnce(sc, acts, s); drop {
			return true, true
		}
	}
	return true, false
}

// replaceOnce is one round of replace.
func (r *Redactor) replaceOnce(sc *scratch, acts []Action, s string) (changed, drop bool) {
	for _, m := range sc.matches {
		if sc.counts[m.rule] == 0 {
			sc.hit = append(sc.hit, m.rule)
		}
		sc.counts[m.rule]++
		switch acts[m.rule] {
		case Drop:
			drop = true
		case Mask, Fingerprint:
			changed = true
		}
	}
	if !changed || drop {
		return changed, drop
	}
	t := sc.tmp[:0]
	prev := 0
	for _, m := range sc.matches {
		a := acts[m.rule]
		if a != Mask && a != Fingerprint {
			continue
		}
		t = append(t, s[prev:m.start]...)
		id := r.rules[m.rule].ID
		if a == Mask {
			t = append(t, "[redacted:"...)
			t = append(t, id...)
		} else {
			t = append(t, '[')
			t = append(t, id...)
			t = append(t, ':')
			t = append(t, r.fp.Of(s[m.start:m.end])...)
		}
		t = append(t, ']')
		prev = m.end
	}
	sc.tmp = append(t, s[prev:]...)
	return true, false
}

func (r *Redactor) findings(sc *scratch, field string, acts []Action) []Finding {
	if len(sc.hit) == 0 {
		return nil
	}
	fs := make([]Finding, len(sc.hit))
	for i, ri := range sc.hit {
		ru := r.rules[ri]
		fs[i] = Finding{Field: field, Detector: ru.ID, Class: ru.Class, Count: sc.counts[ri], Action: acts[ri]}
	}
	slices.SortFunc(fs, func(a, b Finding) int { return cmp.Compare(a.Detector, b.Detector) })
	return fs
}

// Redact scans one content value, the RFC 8785 canonical JSON of the field
// named field, and returns it with every detection in a string, member
// names included, handled by its action. The result is canonical JSON
// again: changed strings are re-encoded, and an object whose member names
// changed is re-sorted (a redacted name that would repeat another gets a
// "~2", "~3" suffix).
//
// When nothing is found, or every action is Keep, out is value itself. When
// any action is Drop, out is nil. Findings are sorted by detector id.
// Malformed JSON is an error wrapping infertrail.ErrInvalid; Redact does
// not otherwise check that value is canonical.
func (r *Redactor) Redact(field string, value []byte) (out []byte, findings []Finding, err error) {
	acts := r.actionsFor(field)
	sc := r.get()
	defer r.put(sc)
	w := walker{r: r, sc: sc, acts: acts, in: value}
	i, err := w.value(w.space(0), 0)
	if err == nil && w.space(i) != len(value) {
		err = w.errorf(i, "unexpected data after the value")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("redact %s: %w", field, err)
	}
	findings = r.findings(sc, field, acts)
	if w.drop {
		return nil, findings, nil
	}
	if len(sc.edits) == 0 {
		return value, findings, nil
	}
	grow := 0
	for _, e := range sc.edits {
		grow += e.n - (e.end - e.start)
	}
	out = make([]byte, 0, len(value)+max(grow, 0))
	prev := 0
	for _, e := range sc.edits {
		out = append(out, value[prev:e.start]...)
		out = append(out, sc.repl[e.off:e.off+e.n]...)
		prev = e.end
	}
	out = append(out, value[prev:]...)
	if w.renamed {
		if out, err = infertrail.Canonicalize(out); err != nil {
			return nil, nil, fmt.Errorf("redact %s: re-sort renamed members: %w", field, err)
		}
	}
	return out, findings, nil
}

// String scans one plain string, such as an HTTP header value, and returns
// it with every detection handled by its action; Drop returns "".
func (r *Redactor) String(field, s string) (string, []Finding) {
	return r.pair(field, "", s)
}

// Header scans the value of a header (or any named value): besides what
// String finds, a value whose name marks it as a secret (x-api-key,
// client_secret, password, …: the rules' names) is taken whole.
func (r *Redactor) Header(field, name, value string) (string, []Finding) {
	return r.pair(field, name, value)
}

func (r *Redactor) pair(field, name, s string) (string, []Finding) {
	acts := r.actionsFor(field)
	sc := r.get()
	defer r.put(sc)
	var names uint64
	if name != "" && len(r.nameRules) > 0 {
		names = r.keywords(sc, name, false)
	}
	r.find(sc, s, name, names)
	if len(sc.matches) == 0 {
		return s, nil
	}
	changed, drop := r.replace(sc, acts, s)
	fs := r.findings(sc, field, acts)
	switch {
	case drop:
		return "", fs
	case changed:
		return string(sc.tmp), fs
	}
	return s, fs
}

// walker walks one JSON value, finding and recording edits.
type walker struct {
	r       *Redactor
	sc      *scratch
	acts    []Action
	in      []byte
	drop    bool
	renamed bool // a member name changed: objects must be re-sorted
}

func (w *walker) errorf(pos int, format string, args ...any) error {
	return &infertrail.SyntaxError{Offset: pos, Msg: fmt.Sprintf(format, args...)}
}

func (w *walker) space(i int) int {
	for i < len(w.in) {
		switch w.in[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func (w *walker) value(i, depth int) (int, error) {
	in := w.in
	if i >= len(in) {
		return i, w.errorf(i, "unexpected end of input, want a value")
	}
	switch c := in[i]; {
	case c == '{':
		return w.object(i, depth+1)
	case c == '[':
		return w.array(i, depth+1)
	case c == '"':
		_, _, end, err := w.str(i, "", 0, 0)
		return end, err
	case c == 't':
		return w.literal(i, "true")
	case c == 'f':
		return w.literal(i, "false")
	case c == 'n':
		return w.literal(i, "null")
	case c == '-' || isDigit(c):
		j := i + 1
		for j < len(in) && (isDigit(in[j]) || in[j] == '.' || in[j] == 'e' || in[j] == 'E' || in[j] == '+' || in[j] == '-') {
			j++
		}
		return j, nil
	}
	return i, w.errorf(i, "unexpected byte 0x%02x, want a value", in[i])
}

func (w *walker) literal(i int, lit string) (int, error) {
	if len(w.in)-i < len(lit) || string(w.in[i:i+len(lit)]) != lit {
		return i, w.errorf(i, "unexpected byte 0x%02x, want a value", w.in[i])
	}
	return i + len(lit), nil
}

func (w *walker) array(i, depth int) (int, error) {
	if depth > infertrail.MaxDepth {
		return i, w.errorf(i, "nesting deeper than %d", infertrail.MaxDepth)
	}
	i = w.space(i + 1)
	if i < len(w.in) && w.in[i] == ']' {
		return i + 1, nil
	}
	for {
		var err error
		if i, err = w.value(i, depth); err != nil {
			return i, err
		}
		i = w.space(i)
		if i >= len(w.in) {
			return i, w.errorf(i, "unexpected end of input in an array")
		}
		switch w.in[i] {
		case ',':
			i = w.space(i + 1)
		case ']':
			return i + 1, nil
		default:
			return i, w.errorf(i, "unexpected byte 0x%02x in an array", w.in[i])
		}
	}
}

func (w *walker) object(i, depth int) (int, error) {
	if depth > infertrail.MaxDepth {
		return i, w.errorf(i, "nesting deeper than %d", infertrail.MaxDepth)
	}
	open := i
	i = w.space(i + 1)
	if i < len(w.in) && w.in[i] == '}' {
		return i + 1, nil
	}
	firstEdit, renamed := len(w.sc.edits), false
	for {
		if i >= len(w.in) || w.in[i] != '"' {
			return i, w.errorf(i, "want a member name")
		}
		before := len(w.sc.edits)
		name, names, j, err := w.str(i, "", 0, depth)
		if err != nil {
			return j, err
		}
		renamed = renamed || len(w.sc.edits) > before
		i = w.space(j)
		if i >= len(w.in) || w.in[i] != ':' {
			return i, w.errorf(i, "want ':' after a member name")
		}
		i = w.space(i + 1)
		if i < len(w.in) && w.in[i] == '"' {
			_, _, i, err = w.str(i, name, names, 0)
		} else {
			i, err = w.value(i, depth)
		}
		if err != nil {
			return i, err
		}
		i = w.space(i)
		if i >= len(w.in) {
			return i, w.errorf(i, "unexpected end of input in an object")
		}
		switch w.in[i] {
		case ',':
			i = w.space(i + 1)
			continue
		case '}':
			if renamed {
				w.renamed = true
				w.dedupe(open, firstEdit, depth)
			}
			return i + 1, nil
		}
		return i, w.errorf(i, "unexpected byte 0x%02x in an object", w.in[i])
	}
}

// str handles the string literal at in[i] and returns the index past it.
// A member name (depth > 0: the depth of its object) is decoded into
// sc.key and returned with the names rules its keywords hit; name and
// names are the member name whose value the string is.
func (w *walker) str(i int, name string, names uint64, depth int) (string, uint64, int, error) {
	in := w.in
	j := i + 1
	esc, wide := false, false
	for {
		j += plainLen(in[j:])
		if j >= len(in) {
			return "", 0, j, w.errorf(j, "unexpected end of input in a string")
		}
		c := in[j]
		if c == '"' {
			break
		}
		switch {
		case c == '\\':
			esc = true
			j += 2
		case c < 0x20:
			return "", 0, j, w.errorf(j, "control character 0x%02x in a string must be escaped", c)
		default:
			wide = true
			j++
		}
	}
	raw := in[i+1 : j]
	var s string
	if esc {
		buf := &w.sc.dec
		if depth > 0 {
			buf = &w.sc.key
		}
		var err error
		if *buf, err = decodeJSON((*buf)[:0], raw); err != nil {
			return "", 0, j, w.errorf(i, "%v", err)
		}
		s = unsafeString(*buf)
	} else {
		if wide && !utf8.Valid(raw) {
			return "", 0, j, w.errorf(i, "invalid UTF-8 in a string")
		}
		s = unsafeString(raw)
	}
	sc := w.sc
	own := w.r.find(sc, s, name, names)
	if len(sc.matches) > 0 {
		if changed, drop := w.r.replace(sc, w.acts, s); drop {
			w.drop = true
		} else if changed && !w.drop {
			off := len(sc.repl)
			sc.repl = infertrail.AppendString(sc.repl, unsafeString(sc.tmp))
			e := edit{start: i, end: j + 1, off: off, n: len(sc.repl) - off}
			if depth > 0 {
				e.depth, e.name = depth, string(sc.tmp)
			}
			sc.edits = append(sc.edits, e)
		}
	}
	return s, own, j + 1, nil
}

// dedupe gives the renamed members of the object at in[open] names that no
// other member of it has.
func (w *walker) dedupe(open, firstEdit, depth int) {
	sc := w.sc
	renamed := map[int]int{} // name start → edit index
	for k := firstEdit; k < len(sc.edits); k++ {
		if e := sc.edits[k]; e.depth == depth {
			renamed[e.start] = k
		}
	}
	taken := map[string]bool{}
	var order []int
	i := w.space(open + 1)
	for i < len(w.in) && w.in[i] == '"' {
		end := skipString(w.in, i)
		if k, ok := renamed[i]; ok {
			order = append(order, k)
		} else {
			dec, _ := decodeJSON(nil, w.in[i+1:end-1])
			taken[string(dec)] = true
		}
		i = w.space(end)
		i = w.space(skipValue(w.in, w.space(i+1))) // ':' and the value
		if i < len(w.in) && w.in[i] == ',' {
			i = w.space(i + 1)
		}
	}
	for _, k := range order {
		e := &sc.edits[k]
		n := e.name
		for c := 2; taken[n]; c++ {
			n = e.name + "~" + strconv.Itoa(c)
		}
		taken[n] = true
		if n != e.name {
			e.name = n
			e.off = len(sc.repl)
			sc.repl = infertrail.AppendString(sc.repl, n)
			e.n = len(sc.repl) - e.off
		}
	}
}

// plainLen returns the length of the longest prefix of b without '"',
// '\\', control characters or non-ASCII bytes, looking at eight bytes at a
// time.
func plainLen(b []byte) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q, bs := x^(ones*'"'), x^(ones*'\\')
		// The subtractions set a high bit in (at least) every byte that is
		// below 0x20, or zero after the XOR; x itself has one in every
		// non-ASCII byte. False alarms only send a block to the loop below.
		if (x-ones*0x20|(q-ones)&^q|(bs-ones)&^bs|x)&highs != 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return i
		}
	}
	return i
}

// skipString returns the index past the well-formed string literal at in[i].
func skipString(in []byte, i int) int {
	for j := i + 1; j < len(in); j++ {
		switch in[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(in)
}

// skipValue returns the index past the well-formed value at in[i].
func skipValue(in []byte, i int) int {
	depth := 0
	for ; i < len(in); i++ {
		switch in[i] {
		case '"':
			i = skipString(in, i) - 1
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',', ':', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

// decodeJSON appends the value of the JSON string contents raw (without
// quotes) to dst.
func decodeJSON(dst, raw []byte) ([]byte, error) {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			if c < utf8.RuneSelf {
				dst = append(dst, c)
				i++
				continue
			}
			r, n := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && n <= 1 {
				return dst, fmt.Errorf("invalid UTF-8 in a string")
			}
			dst = append(dst, raw[i:i+n]...)
			i += n
			continue
		}
		if i+1 >= len(raw) {
			return dst, fmt.Errorf("unexpected end of a string escape")
		}
		e := raw[i+1]
		i += 2
		switch e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(raw, i)
			if !ok {
				return dst, fmt.Errorf("invalid \\u escape in a string")
			}
			i += 4
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if r < 0xdc00 && i+1 < len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					r2, ok = hex4(raw, i+2)
				}
				if r = utf16.DecodeRune(r, r2); !ok || r == utf8.RuneError {
					return dst, fmt.Errorf("lone UTF-16 surrogate in a string")
				}
				i += 6
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, fmt.Errorf("invalid escape '\\%c' in a string", e)
		}
	}
	return dst, nil
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case isDigit(c):
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
