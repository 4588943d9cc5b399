package redact

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// A validator checks a candidate secret at s[start:end] (the regex match,
// or its capture group). It may narrow the span, as the card and IBAN
// validators do when a regex took in a trailing group of digits, and
// reports whether the candidate is one.
type validator func(s string, start, end int) (int, int, bool)

// validators are the checks a rule can name.
var validators = map[string]validator{
	"luhn":      validLuhn,
	"card":      validCard,
	"iban":      validIBAN,
	"jwt":       validJWT,
	"phone":     validPhone,
	"password":  validPassword,
	"mixed":     validMixed,
	"token":     validToken,
	"basicauth": validBasicAuth,
	// entropy checks the rule's entropy field, as every rule with one does.
	"entropy": func(_ string, start, end int) (int, int, bool) { return start, end, true },
}

func validatorNames() []string {
	names := make([]string, 0, len(validators))
	for n := range validators {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isAlnum(c byte) bool { return isDigit(c) || isUpper(c) || isLower(c) }

// entropy returns the Shannon entropy of s in bits per byte.
func entropy(s string) float64 {
	if s == "" {
		return 0
	}
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	n := float64(len(s))
	h := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}

// luhn reports whether the digits of d pass the Luhn check.
func luhn(d string) bool {
	sum, double := 0, false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if double {
			if v *= 2; v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

func digitsOf(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func validLuhn(s string, start, end int) (int, int, bool) {
	d := digitsOf(s[start:end])
	return start, end, len(d) >= 2 && luhn(d)
}

// group is a run of digits at [lo, hi) and the separator before it.
type group struct {
	lo, hi int
	sep    string
}

// digitGroups splits s[start:end] into runs of digits and what separates
// them. It stops at the first byte that is neither a digit nor in seps.
func digitGroups(s string, start, end int, seps string, gs []group) []group {
	i := start
	for i < end {
		j := i
		for j < end && !isDigit(s[j]) && strings.IndexByte(seps, s[j]) >= 0 {
			j++
		}
		if j >= end || !isDigit(s[j]) {
			break
		}
		k := j
		for k < end && isDigit(s[k]) {
			k++
		}
		gs = append(gs, group{lo: j, hi: k, sep: s[i:j]})
		i = k
	}
	return gs
}

// cardIIN reports whether the digits d of a card number begin with a
// known issuer identification number and have a length that issuer uses.
func cardIIN(d string) bool {
	n := len(d)
	p := func(k int) int {
		v := 0
		for i := 0; i < k; i++ {
			v = v*10 + int(d[i]-'0')
		}
		return v
	}
	switch p2, p3, p4 := p(2), p(3), p(4); {
	case d[0] == '4': // Visa
		return n == 13 || n == 16 || n == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720: // Mastercard
		return n == 16
	case p2 == 34, p2 == 37: // American Express
		return n == 15
	case p4 >= 2200 && p4 <= 2204: // Mir
		return n >= 16
	case p3 >= 300 && p3 <= 305, p2 == 36, p2 == 38, p2 == 39: // Diners Club
		return n >= 14
	case p4 >= 3528 && p4 <= 3589: // JCB
		return n >= 16
	case d[0] == '6': // Discover, UnionPay, Maestro, RuPay
		return n >= 16 || n >= 13 && (p4 == 6304 || p4 == 6759 || p4 >= 6761 && p4 <= 6763)
	case p2 == 50, p2 >= 56 && p2 <= 58: // Maestro, Verve
		return n >= 13
	case p2 == 81, p2 == 82: // RuPay, UnionPay
		return n == 16
	case d[0] == '1': // UATP
		return n == 15
	}
	return false
}

// cardGrouping reports whether groups of these lengths are how card
// numbers are written: one run, fours with a shorter last group, or the
// 4-6-5 and 4-6-4 of American Express and Diners Club.
func cardGrouping(lens []int) bool {
	if len(lens) == 1 {
		return true
	}
	if len(lens) == 3 && lens[0] == 4 && lens[1] == 6 && (lens[2] == 5 || lens[2] == 4) {
		return true
	}
	for i, l := range lens {
		if i < len(lens)-1 && l != 4 || l < 1 || l > 4 {
			return false
		}
	}
	return true
}

func validCard(s string, start, end int) (int, int, bool) {
	var buf [24]group
	gs := digitGroups(s, start, end, " -", buf[:0])
	if len(gs) == 0 || start > 0 && (isAlnum(s[start-1]) || s[start-1] == '.' || s[start-1] == ',') {
		return 0, 0, false
	}
	// Separators must be single and all alike, up to the last group taken.
	same := 1
	for same < len(gs) && len(gs[same].sep) == 1 && (same == 1 || gs[same].sep == gs[1].sep) {
		same++
	}
	var lens [24]int
	for k := same; k >= 1; k-- {
		n := 0
		for i, g := range gs[:k] {
			lens[i] = g.hi - g.lo
			n += g.hi - g.lo
		}
		if n < 13 {
			break
		}
		e := gs[k-1].hi
		if n > 19 || !cardGrouping(lens[:k]) || e < len(s) && (isAlnum(s[e]) || (s[e] == '.' || s[e] == ',') && e+1 < len(s) && isDigit(s[e+1])) {
			continue
		}
		d := digitsOf(s[start:e])
		if cardIIN(d) && luhn(d) {
			return start, e, true
		}
	}
	return 0, 0, false
}

// ibanLengths is the length of an IBAN in each country that issues them
// (the SWIFT IBAN registry).
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
	"BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
	"EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
	"GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
	"IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
	"LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
	"NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
	"RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
	"SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

// minIBAN is the length of the shortest IBAN (Norway's).
const minIBAN = 15

// ibanChecksum reports whether the IBAN in a (capital letters and digits
// only) passes the ISO 7064 mod-97 check.
func ibanChecksum(a []byte) bool {
	rem := 0
	add := func(c byte) {
		if isDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A'+10)) % 97
		}
	}
	for _, c := range a[4:] {
		add(c)
	}
	for _, c := range a[:4] {
		add(c)
	}
	return rem == 1
}

func validIBAN(s string, start, _ int) (int, int, bool) {
	if start+4 > len(s) || start > 0 && isAlnum(s[start-1]) {
		return 0, 0, false
	}
	want := ibanLengths[s[start:start+2]]
	if want == 0 {
		return 0, 0, false
	}
	var buf [34]byte
	a := buf[:0]
	i := start
	for i < len(s) && len(a) < want {
		c := s[i]
		switch {
		case isDigit(c) || isUpper(c):
			a = append(a, c)
			i++
		case c == ' ' && len(a) >= 4 && i+1 < len(s) && (isDigit(s[i+1]) || isUpper(s[i+1])):
			i++
		default:
			return 0, 0, false
		}
	}
	if len(a) < want || i < len(s) && isAlnum(s[i]) || !isDigit(a[2]) || !isDigit(a[3]) {
		return 0, 0, false
	}
	return start, i, ibanChecksum(a)
}

func isB64URL(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }

func validJWT(s string, start, end int) (int, int, bool) {
	if start > 0 && (isB64URL(s[start-1]) || s[start-1] == '.') {
		return 0, 0, false
	}
	h, _, ok := strings.Cut(s[start:end], ".")
	if !ok {
		return 0, 0, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(h, "="))
	if err != nil {
		return 0, 0, false
	}
	var header map[string]json.RawMessage
	if json.Unmarshal(raw, &header) != nil {
		return 0, 0, false
	}
	alg, ok := header["alg"]
	return start, end, ok && len(alg) > 2 && alg[0] == '"'
}

// validPhone accepts E.164 numbers ("+" and 8 to 15 digits, with or
// without separators) and national numbers written with separators that
// start with a trunk "0", an area code in parentheses, or the North
// American 3-3-4 shape. Dates, times, IP addresses, version strings and
// plain long numbers are refused.
func validPhone(s string, start, end int) (int, int, bool) {
	if start > 0 {
		if c := s[start-1]; isAlnum(c) || strings.IndexByte("+-./_#:$€£", c) >= 0 {
			return 0, 0, false
		}
	}
	plus := s[start] == '+'
	i := start
	if plus {
		i++
	}
	var buf [16]group
	gs := digitGroups(s, i, end, " .-()/", buf[:0])
	if len(gs) == 0 || gs[0].lo != i && !(s[i] == '(' && gs[0].lo == i+1) {
		return 0, 0, false
	}
	for k := len(gs); k >= 1; k-- {
		e := gs[k-1].hi
		if k < len(gs) && len(gs[k].sep) == 1 && strings.IndexByte(".:/", gs[k].sep[0]) >= 0 {
			continue // "555-123-4567.8" is not a phone number followed by something
		}
		if e < len(s) && (isAlnum(s[e]) || s[e] == ')' && strings.Count(s[start:e], "(") == strings.Count(s[start:e], ")")) {
			continue
		}
		if phoneShape(s[start:e], start, gs[:k], plus) {
			if e < len(s) && s[e] == ')' {
				e++
			}
			return start, e, true
		}
	}
	return 0, 0, false
}

// phoneShape checks the groups gs of a candidate t that starts at base.
func phoneShape(t string, base int, gs []group, plus bool) bool {
	n := 0
	for _, g := range gs {
		n += g.hi - g.lo
	}
	if n < 7 || n > 15 || plus && n < 8 {
		return false
	}
	open, close := strings.Count(t, "("), strings.Count(t, ")")
	if open != close || open > 1 {
		return false
	}
	paren := open == 1
	kinds := ""
	for _, g := range gs[1:] {
		sep := strings.Trim(g.sep, "()")
		if len(g.sep) > 2 || len(sep) > 1 {
			return false
		}
		if sep != "" && !strings.Contains(kinds, sep) {
			kinds += sep
		}
	}
	if len(kinds) > 1 && !paren {
		return false
	}
	lens := make([]int, len(gs))
	for i, g := range gs {
		lens[i] = g.hi - g.lo
		if lens[i] == 1 && i > 0 && !(g.lo-base >= 1 && t[g.lo-base-1] == '(' && t[g.lo-base] == '0') {
			return false // only a leading country or trunk digit, or "(0)", stands alone
		}
	}
	if plus {
		return t[1] != '0'
	}
	if len(gs) == 1 || n > 12 {
		return false
	}
	first := t[0]
	if first == '(' {
		first = t[1]
	}
	switch {
	case kinds == "." && len(gs) == 4 && lens[0] <= 3 && lens[1] <= 3 && lens[2] <= 3 && lens[3] <= 3:
		return false // an IP address
	case isDateShape(t, base, gs):
		return false
	case paren:
		return true
	case first == '0':
		return lens[0] >= 2 && lens[0] <= 5
	case len(gs) == 3 && lens[0] == 3 && lens[1] == 3 && lens[2] == 4 && first >= '2':
		return true
	case len(gs) == 4 && lens[0] == 1 && first == '1' && lens[1] == 3 && lens[2] == 3 && lens[3] == 4:
		return true
	}
	return false
}

// isDateShape reports whether groups look like a date: 2026-11-26,
// 26.11.2026, 11/26/26, or a year followed by two-digit groups.
func isDateShape(t string, base int, gs []group) bool {
	val := func(g group) int {
		v := 0
		for _, c := range []byte(t[g.lo-base : g.hi-base]) {
			v = v*10 + int(c-'0')
		}
		return v
	}
	lens := make([]int, len(gs))
	for i, g := range gs {
		lens[i] = g.hi - g.lo
	}
	year := func(g group) bool { v := val(g); return g.hi-g.lo == 4 && v >= 1900 && v <= 2199 }
	if len(gs) >= 3 && year(gs[0]) {
		for _, l := range lens[1:] {
			if l != 2 {
				return false
			}
		}
		return true
	}
	if len(gs) == 3 && lens[0] <= 2 && lens[1] <= 2 && (lens[2] == 4 && year(gs[2]) || lens[2] == 2) {
		a, b := val(gs[0]), val(gs[1])
		return a >= 1 && a <= 31 && b >= 1 && b <= 31 && (a <= 12 || b <= 12)
	}
	return false
}

func validPassword(s string, start, end int) (int, int, bool) {
	v := s[start:end]
	if v[0] == '$' || v[0] == '%' {
		return 0, 0, false // a variable or a template: $DB_PASSWORD, %(password)s
	}
	lv := strings.ToLower(v)
	if strings.Contains(lv, "getenv") || strings.Contains(lv, "environ") || strings.Contains(lv, "process.env") {
		return 0, 0, false
	}
	var digit, upper, lower, other bool
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case isDigit(c):
			digit = true
		case isUpper(c):
			upper = upper || i > 0
		case isLower(c):
			lower = true
		default:
			other = true
		}
	}
	return start, end, digit || other || upper && lower || len(v) >= 16
}

func validMixed(s string, start, end int) (int, int, bool) {
	var letter, digit bool
	for i := start; i < end; i++ {
		c := s[i]
		letter = letter || isUpper(c) || isLower(c)
		digit = digit || isDigit(c)
	}
	return start, end, letter && digit
}

func isTokenChar(c byte) bool {
	return isAlnum(c) || c == '+' || c == '/' || c == '=' || c == '_' || c == '-'
}

// validToken accepts a whole run of token characters that looks random:
// upper case, lower case and at least two digits, not hexadecimal, with
// short runs of lower-case letters (random base62 or base64 averages under
// two; the words of identifiers, paths and prose are longer), and not
// base64 of prose.
func validToken(s string, start, end int) (int, int, bool) {
	if start > 0 && isTokenChar(s[start-1]) && s[start-1] != '=' || end < len(s) && isTokenChar(s[end]) {
		return 0, 0, false
	}
	t := strings.TrimRight(s[start:end], "=")
	if len(t) < 20 || len(t) > 256 || strings.HasSuffix(s[:start], "base64,") {
		return 0, 0, false
	}
	var upper, lower, digits, runs int
	hex := true
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case isDigit(c):
			digits++
		case isUpper(c):
			upper++
			hex = hex && c <= 'F'
		case isLower(c):
			lower++
			hex = hex && c <= 'f'
			if i == 0 || !isLower(t[i-1]) {
				runs++
			}
		default:
			hex = hex && c == '-'
		}
	}
	if hex || upper == 0 || lower == 0 || digits < 2 || float64(lower)/float64(runs) > 3 {
		return 0, 0, false
	}
	return start, end, !base64Prose(t)
}

// base64Prose reports whether t is base64 of text with spaces: encoded
// content rather than a key.
func base64Prose(t string) bool {
	raw, err := base64.RawStdEncoding.DecodeString(t)
	if err != nil {
		if raw, err = base64.RawURLEncoding.DecodeString(t); err != nil {
			return false
		}
	}
	spaces := 0
	for _, c := range raw {
		if c < 0x20 && c != '\n' && c != '\t' || c >= 0x7f {
			return false
		}
		if c == ' ' {
			spaces++
		}
	}
	return spaces > 0
}

func validBasicAuth(s string, start, end int) (int, int, bool) {
	v := s[start:end]
	raw, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		if raw, err = base64.RawStdEncoding.DecodeString(v); err != nil {
			return 0, 0, false
		}
	}
	if !utf8.Valid(raw) {
		return 0, 0, false
	}
	for _, c := range raw {
		if c < 0x20 || c == 0x7f {
			return 0, 0, false
		}
	}
	i := strings.IndexByte(string(raw), ':')
	return start, end, i >= 1 && i < len(raw)-1
}

// placeholderWords are values that stand for a secret in documentation and
// templates rather than being one.
var placeholderWords = map[string]bool{
	"password": true, "passwd": true, "secret": true, "token": true, "null": true, "nil": true, "none": true,
	"undefined": true, "true": true, "false": true, "string": true, "required": true, "optional": true,
	"hidden": true, "masked": true, "empty": true,
}

var placeholderParts = []string{"example", "placeholder", "your", "xxxx", "****", "....", "…", "•••", "<", ">", "{{", "${", "redacted", "dummy", "sample"}

// placeholder reports whether a candidate secret is a stand-in such as
// "<your key>", "sk-xxxxxxxx" or "${API_KEY}".
func placeholder(v string) bool {
	if v == "" {
		return true
	}
	same := true
	for i := 1; i < len(v); i++ {
		if v[i] != v[0] {
			same = false
			break
		}
	}
	if same {
		return true
	}
	lv := strings.ToLower(v)
	if placeholderWords[lv] {
		return true
	}
	for _, p := range placeholderParts {
		if strings.Contains(lv, p) {
			return true
		}
	}
	return false
}
