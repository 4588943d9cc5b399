package infertrail_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/gowebpki/jcs"

	"github.com/infertrail/infertrail"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// writeOrCompareGolden compares got with the golden file at path, or
// rewrites the file when -update is set.
func writeOrCompareGolden(tb testing.TB, path string, got []byte) {
	tb.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		tb.Errorf("%s differs from the golden file:\n got  %s\n want %s", path, got, want)
	}
}

// jcsInputs returns the golden inputs testdata/jcs/*.json by base name.
func jcsInputs(tb testing.TB) map[string][]byte {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "jcs", "*.json"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) == 0 {
		tb.Fatal("no files in testdata/jcs")
	}
	out := make(map[string][]byte, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = b
	}
	return out
}

// TestCanonicalizeGolden checks each testdata/jcs/NAME.json against its
// canonical form NAME.canon, and that the independent implementation agrees.
func TestCanonicalizeGolden(t *testing.T) {
	for name, in := range jcsInputs(t) {
		t.Run(name, func(t *testing.T) {
			got, err := infertrail.Canonicalize(in)
			if err != nil {
				t.Fatalf("Canonicalize: %v", err)
			}
			writeOrCompareGolden(t, filepath.Join("testdata", "jcs", name+".canon"), got)
			if other, err := jcs.Transform(in); err == nil && !bytes.Equal(got, other) {
				t.Errorf("gowebpki/jcs disagrees:\n ours   %s\n theirs %s", got, other)
			}
			again, err := infertrail.Canonicalize(got)
			if err != nil || !bytes.Equal(again, got) {
				t.Errorf("canonical form is not stable: %s, %v", again, err)
			}
		})
	}
}

// TestCanonicalizeCases spells out the rules of RFC 8785 one input at a time.
func TestCanonicalizeCases(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		// RFC 8785 section 3.2.2: white space, sorting, string and number forms.
		{"rfc8785 example", `{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]}`,
			`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		{"white space around a scalar", " \t\r\n true \n", `true`},
		{"empty object", `{ }`, `{}`},
		{"empty array", `[ ]`, `[]`},
		{"empty string", `""`, `""`},
		{"null", `null`, `null`},

		// Sorting by UTF-16 code units.
		{"ascii sort", `{"b":1,"a":2,"B":3,"A":4,"_":5,"1":6}`, `{"1":6,"A":4,"B":3,"_":5,"a":2,"b":1}`},
		{"prefix sorts first", `{"ab":1,"a":2,"":3}`, `{"":3,"a":2,"ab":1}`},
		{"non-BMP before private use", `{"\ue000":1,"\ud83d\ude00":2}`, "{\"\U0001F600\":2,\"\ue000\":1}"},
		{"non-BMP before U+FFFF", "{\"\uffff\":1,\"\U00010000\":2}", "{\"\U00010000\":2,\"\uffff\":1}"},
		{"BMP below surrogates before non-BMP", "{\"\U0001F600\":1,\"\ud7ff\":2}", "{\"\ud7ff\":2,\"\U0001F600\":1}"},
		{"escaped names sort by value", `{"\n":1,"\u0001":2,"\"":3,"\\":4}`, `{"\u0001":2,"\n":1,"\"":3,"\\":4}`},
		{"nested objects sorted", `{"b":{"d":1,"c":2},"a":[{"f":1,"e":2}]}`, `{"a":[{"e":2,"f":1}],"b":{"c":2,"d":1}}`},
		{"arrays keep order", `[3,1,2,"b","a"]`, `[3,1,2,"b","a"]`},

		// Strings: only the mandatory escapes.
		{"control characters", `"\u0000\u0007\b\t\n\u000b\f\r\u001f"`, `"\u0000\u0007\b\t\n\u000b\f\r\u001f"`},
		{"upper-case hex escape lowered", `"\u001F\u001A"`, `"\u001f\u001a"`},
		{"solidus unescaped", `"\/a\/"`, `"/a/"`},
		{"quote and backslash", `"\"\\"`, `"\"\\"`},
		{"line and paragraph separators literal", `"\u2028\u2029"`, "\"\u2028\u2029\""},
		{"e acute decoded", `"\u00e9"`, `"é"`},
		{"DEL literal", `"\u007f"`, "\"\x7f\""},
		{"surrogate pair decoded", `"\ud83d\ude00"`, "\"\U0001F600\""},
		{"U+FFFD escape kept as a character", `"\ufffd"`, "\"\ufffd\""},
		{"no unicode normalisation", `"A\u030a"`, "\"A\u030a\""},

		// Numbers: ECMAScript Number.prototype.toString.
		{"zero", `0`, `0`},
		{"minus zero", `-0`, `0`},
		{"minus zero float", `-0.0e5`, `0`},
		{"exponent upper case", `1E+2`, `100`},
		{"exponent minus", `-1.5e-9`, `-1.5e-9`},
		{"1e21", `1e21`, `1e+21`},
		{"1e20", `1e20`, `100000000000000000000`},
		{"1e-7", `1e-7`, `1e-7`},
		{"0.000001", `0.000001`, `0.000001`},
		{"big float with fraction", `123456789012345680000.0`, `123456789012345680000`},
		{"smallest subnormal", `5e-324`, `5e-324`},
		{"largest double", `1.7976931348623157e308`, `1.7976931348623157e+308`},
		{"max safe integer", `9007199254740991`, `9007199254740991`},
		{"min safe integer", `-9007199254740991`, `-9007199254740991`},
		{"4.50", `4.50`, `4.5`},
		{"0.1+0.2", `0.30000000000000004`, `0.30000000000000004`},
		{"trailing fraction zeros", `10.000`, `10`},
		{"underflow to zero", `1e-400`, `0`},
		{"negative underflow to zero", `-1e-400`, `0`},
		{"many digits rounded", `0.1000000000000000055511151231257827`, `0.1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := infertrail.Canonicalize([]byte(tt.in))
			if tt.want == "" {
				if err == nil {
					t.Fatalf("Canonicalize(%s) = %s, want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Canonicalize(%s): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("Canonicalize(%s)\n got  %s\n want %s", tt.in, got, tt.want)
			}
			if other, err := jcs.Transform([]byte(tt.in)); err == nil && !bytes.Equal(got, other) {
				t.Errorf("gowebpki/jcs disagrees: %s", other)
			}
		})
	}
}

// TestAppendCanonicalAppends checks that AppendCanonical keeps dst and
// leaves it alone on error.
func TestAppendCanonicalAppends(t *testing.T) {
	dst := []byte("prefix:")
	got, err := infertrail.AppendCanonical(dst, []byte(` {"b":1,"a":2} `))
	if err != nil || string(got) != `prefix:{"a":2,"b":1}` {
		t.Fatalf("AppendCanonical = %q, %v", got, err)
	}
	got, err = infertrail.AppendCanonical(dst, []byte(`{"b":1,"a":}`))
	if err == nil || string(got) != "prefix:" {
		t.Fatalf("AppendCanonical of bad input = %q, %v; want prefix: and an error", got, err)
	}
}

// TestCanonicalizeRejects checks that malformed and non-I-JSON input is
// refused with an error that says why and where.
func TestCanonicalizeRejects(t *testing.T) {
	tests := []struct {
		name, in string
		msg      string // a substring of the error
		path     string // SyntaxError.Path
	}{
		{"empty input", ``, "end of input", ""},
		{"only white space", " \n\t", "end of input", ""},
		{"duplicate names", `{"a":1,"a":2}`, "duplicate member name", ""},
		{"duplicate names escaped differently", `{"a":1,"\u0061":2}`, "duplicate member name", ""},
		{"duplicate names not adjacent", `{"b":1,"a":2,"b":3}`, "duplicate member name", ""},
		{"duplicate non-BMP names", `{"\ud83d\ude00":1,"😀":2}`, "duplicate member name", ""},
		{"duplicate escaped control names", `{"\n":1,"\u000a":2}`, "duplicate member name", ""},
		{"duplicate nested", `{"a":{"b":[0,{"c":1,"c":2}]}}`, "duplicate member name", "a.b[1]"},
		{"lone high surrogate", `"\ud83d"`, "surrogate", ""},
		{"lone high surrogate then text", `"\ud83dx"`, "surrogate", ""},
		{"lone low surrogate", `"\ude00"`, "surrogate", ""},
		{"high surrogate then non-surrogate escape", `"\ud83d\u0041"`, "surrogate", ""},
		{"two high surrogates", `"\ud83d\ud83d"`, "surrogate", ""},
		{"lone surrogate in a name", `{"\udc00":1}`, "surrogate", ""},
		{"invalid UTF-8", "\"\xff\"", "UTF-8", ""},
		{"truncated UTF-8", "\"\xc3\"", "UTF-8", ""},
		{"overlong UTF-8", "\"\xc0\xaf\"", "UTF-8", ""},
		{"UTF-8 encoded surrogate", "\"\xed\xa0\x80\"", "UTF-8", ""},
		{"invalid UTF-8 in a name", "{\"\xfe\":1}", "UTF-8", ""},
		{"raw newline in a string", "\"a\nb\"", "control character", ""},
		{"raw NUL in a string", "\"\x00\"", "control character", ""},
		{"raw tab in a string", "[\"\t\"]", "control character", "[0]"},
		{"bad escape", `"\x41"`, "invalid escape", ""},
		{"short unicode escape", `"\u12"`, "escape", ""},
		{"non-hex unicode escape", `"\u12g4"`, "escape", ""},
		{"unterminated string", `"abc`, "end of input", ""},
		{"leading zero", `01`, "leading zero", ""},
		{"negative leading zero", `-012`, "leading zero", ""},
		{"leading zero in an array", `[1,00]`, "leading zero", "[1]"},
		{"plus sign", `+1`, "want a value", ""},
		{"lone minus", `-`, "digit", ""},
		{"fraction without digits", `1.`, "digit", ""},
		{"fraction without integer", `.5`, "want a value", ""},
		{"exponent without digits", `1e`, "exponent", ""},
		{"exponent sign without digits", `1e+`, "exponent", ""},
		{"hex number", `0x10`, "after the value", ""},
		{"trailing comma in an array", `[1,2,]`, "want a value", "[2]"},
		{"trailing comma in an object", `{"a":1,}`, "member name", ""},
		{"missing colon", `{"a" 1}`, "':'", ""},
		{"missing comma", `[1 2]`, "','", ""},
		{"unquoted name", `{a:1}`, "member name", ""},
		{"single quotes", `'a'`, "want a value", ""},
		{"NaN", `NaN`, "want a value", ""},
		{"Infinity", `Infinity`, "want a value", ""},
		{"minus Infinity", `-Infinity`, "digit", ""},
		{"NaN in an object", `{"x":{"y":NaN}}`, "want a value", "x.y"},
		{"truncated literal", `tru`, "want a value", ""},
		{"capitalised literal", `True`, "want a value", ""},
		{"overflow to infinity", `1e400`, "range of a double", ""},
		{"2^53+1", `9007199254740993`, "2^53", ""},
		{"-(2^53+1)", `-9007199254740993`, "2^53", ""},
		{"2^64", `18446744073709551616`, "2^53", ""},
		{"big integer", `123456789012345678901234567890`, "2^53", ""},
		{"big integer in a member", `{"a":{"b":[0,0,18446744073709551616]}}`, "2^53", "a.b[2]"},
		{"path with dotted name", `{"gen_ai.usage":{"n":99999999999999999}}`, "2^53", `["gen_ai.usage"].n`},
		{"path with empty name", `{"":[tru]}`, "want a value", `[""][0]`},
		{"trailing garbage", `{} x`, "after the value", ""},
		{"two values", `1 2`, "after the value", ""},
		{"trailing bracket", `[1]]`, "after the value", ""},
		{"unclosed array", `[1,2`, "end of input", ""},
		{"unclosed object", `{"a":1`, "end of input", ""},
		{"unbalanced", `[}`, "want a value", "[0]"},
		{"byte order mark", "\ufeff{}", "want a value", ""},
		{"too deep arrays", strings.Repeat("[", infertrail.MaxDepth+1) + strings.Repeat("]", infertrail.MaxDepth+1), "nesting deeper", ""},
		{"too deep objects", strings.Repeat(`{"a":`, infertrail.MaxDepth+1) + "1" + strings.Repeat("}", infertrail.MaxDepth+1), "nesting deeper", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := infertrail.Canonicalize([]byte(tt.in))
			if err == nil {
				t.Fatalf("Canonicalize(%q) = %s, want an error", tt.in, got)
			}
			var se *infertrail.SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T) is not a *SyntaxError", err, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
			if tt.path != "*" && se.Path != tt.path && !strings.HasPrefix(tt.name, "too deep") {
				t.Errorf("Path = %q, want %q (error %v)", se.Path, tt.path, err)
			}
			if se.Offset < 0 || se.Offset > len(tt.in) {
				t.Errorf("Offset = %d, outside the input of %d bytes", se.Offset, len(tt.in))
			}
		})
	}
}

// TestCanonicalizeDepth checks the nesting limit exactly.
func TestCanonicalizeDepth(t *testing.T) {
	for _, depth := range []int{1, infertrail.MaxDepth - 1, infertrail.MaxDepth} {
		in := strings.Repeat("[", depth) + strings.Repeat("]", depth)
		if _, err := infertrail.Canonicalize([]byte(in)); err != nil {
			t.Errorf("depth %d: %v", depth, err)
		}
		in = strings.Repeat(`{"a":`, depth) + "[]" + strings.Repeat("}", depth)
		_, err := infertrail.Canonicalize([]byte(in))
		if depth < infertrail.MaxDepth && err != nil {
			t.Errorf("depth %d+1 objects: %v", depth, err)
		}
		if depth == infertrail.MaxDepth && err == nil {
			t.Errorf("depth %d+1 objects accepted", depth)
		}
	}
	// Depth is counted per value: many siblings at the limit are fine.
	deep := strings.Repeat("[", infertrail.MaxDepth-1) + strings.Repeat("]", infertrail.MaxDepth-1)
	in := "[" + strings.Repeat(deep+",", 10) + deep + "]"
	if _, err := infertrail.Canonicalize([]byte(in)); err != nil {
		t.Errorf("siblings at the limit: %v", err)
	}
}

// es6Numbers maps IEEE 754 bit patterns to ECMAScript's serialisation: the
// samples of RFC 8785 appendix B and other well-known edge cases.
var es6Numbers = []struct {
	bits uint64
	want string // "" for an error
}{
	{0x0000000000000000, "0"},
	{0x8000000000000000, "0"},
	{0x0000000000000001, "5e-324"},
	{0x8000000000000001, "-5e-324"},
	{0x7fefffffffffffff, "1.7976931348623157e+308"},
	{0xffefffffffffffff, "-1.7976931348623157e+308"},
	{0x4340000000000000, "9007199254740992"},
	{0xc340000000000000, "-9007199254740992"},
	{0x4340000000000001, "9007199254740994"},
	{0x4340000000000002, "9007199254740996"},
	{0x4430000000000000, "295147905179352830000"},
	{0x7fffffffffffffff, ""},
	{0x7ff8000000000000, ""},
	{0x7ff0000000000000, ""},
	{0xfff0000000000000, ""},
	{0x44b52d02c7e14af5, "9.999999999999997e+22"},
	{0x44b52d02c7e14af6, "1e+23"},
	{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
	{0x444b1ae4d6e2ef4e, "999999999999999700000"},
	{0x444b1ae4d6e2ef4f, "999999999999999900000"},
	{0x444b1ae4d6e2ef50, "1e+21"},
	{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
	{0x3eb0c6f7a0b5ed8d, "0.000001"},
	{0x41b3de4355555553, "333333333.3333332"},
	{0x41b3de4355555554, "333333333.33333325"},
	{0x41b3de4355555555, "333333333.3333333"},
	{0x41b3de4355555556, "333333333.3333334"},
	{0x41b3de4355555557, "333333333.33333343"},
	{0xbecbf647612f3696, "-0.0000033333333333333333"},
	{0x43143ff3c1cb0959, "1424953923781206.2"},
	{math.Float64bits(1e-7), "1e-7"},
	{math.Float64bits(123456789012345680000), "123456789012345680000"},
	{math.Float64bits(9007199254740991), "9007199254740991"},
	{math.Float64bits(4.5), "4.5"},
	{0x3fd3333333333334, "0.30000000000000004"}, // 0.1 + 0.2 in float64 arithmetic
	{math.Float64bits(100), "100"},
	{math.Float64bits(-1.5e-9), "-1.5e-9"},
	{math.Float64bits(1e-6), "0.000001"},
	{math.Float64bits(1.5e-6), "0.0000015"},
	{math.Float64bits(1e20), "100000000000000000000"},
	{math.Float64bits(1.5e21), "1.5e+21"},
	{math.Float64bits(2.2250738585072014e-308), "2.2250738585072014e-308"},
	{math.Float64bits(-123.456), "-123.456"},
	{math.Float64bits(1), "1"},
	{math.Float64bits(-1), "-1"},
}

func TestAppendNumberES6(t *testing.T) {
	for _, tt := range es6Numbers {
		f := math.Float64frombits(tt.bits)
		t.Run(fmt.Sprintf("%016x", tt.bits), func(t *testing.T) {
			got, err := infertrail.AppendNumber([]byte("x"), f)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("AppendNumber(%v) = %s, want an error", f, got)
				}
				if !errors.Is(err, infertrail.ErrInvalid) {
					t.Errorf("error %v does not wrap ErrInvalid", err)
				}
				if string(got) != "x" {
					t.Errorf("AppendNumber changed dst on error: %q", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("AppendNumber(%v): %v", f, err)
			}
			if string(got) != "x"+tt.want {
				t.Errorf("AppendNumber(%v) = %s, want %s", f, got[1:], tt.want)
			}
			if other, err := jcs.NumberToJSON(f); err != nil || other != tt.want {
				t.Errorf("gowebpki/jcs NumberToJSON = %s, %v", other, err)
			}
			if back, err := strconv.ParseFloat(string(got[1:]), 64); err != nil || back != f && !(f == 0 && back == 0) {
				t.Errorf("%s parses back as %v, %v", got[1:], back, err)
			}
		})
	}
}

// es6Expect is an independent, strconv-based statement of ECMAScript's
// Number.prototype.toString: fixed notation with the shortest round-trip
// digits from 1e-6 up to 1e21, and the shortest exponent form outside.
func es6Expect(f float64) string {
	if f == 0 {
		return "0"
	}
	if a := math.Abs(f); a >= 1e-6 && a < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	s := strconv.FormatFloat(f, 'e', -1, 64)
	mant, exp, _ := strings.Cut(s, "e")
	sign, digits := exp[:1], strings.TrimLeft(exp[1:], "0")
	return mant + "e" + sign + digits
}

func TestAppendNumberRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(f float64) {
		t.Helper()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			if _, err := infertrail.AppendNumber(nil, f); err == nil {
				t.Errorf("AppendNumber(%v) succeeded", f)
			}
			return
		}
		got, err := infertrail.AppendNumber(nil, f)
		if err != nil {
			t.Fatalf("AppendNumber(%v): %v", f, err)
		}
		if want := es6Expect(f); string(got) != want {
			t.Fatalf("AppendNumber(%b) = %s, want %s", f, got, want)
		}
		back, err := strconv.ParseFloat(string(got), 64)
		if err != nil || back != f {
			t.Fatalf("AppendNumber(%b) = %s parses back as %v, %v", f, got, back, err)
		}
	}
	for range 200000 {
		check(math.Float64frombits(rng.Uint64())) // any bit pattern
	}
	for range 50000 {
		check(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(60)-30))) // ordinary magnitudes
	}
	for e := -330; e <= 310; e++ { // every power of ten and its neighbours
		f, _ := strconv.ParseFloat("1e"+strconv.Itoa(e), 64)
		check(f)
		check(math.Nextafter(f, 0))
		check(math.Nextafter(f, math.Inf(1)))
		check(-f)
	}
}

// TestCanonicalFormReparses checks that the canonical form of every accepted
// number is accepted again and unchanged, including doubles whose ECMAScript
// form is an integer beyond 2^53 (1e20 is written 100000000000000000000).
// Without this, Canonicalize is not idempotent, and a leaf holding such an
// attribute cannot be parsed back by ParseLeaf.
func TestCanonicalFormReparses(t *testing.T) {
	inputs := []string{"1e20", "1e16", "9007199254740992.0", "-9007199254740994.0", "123456789012345680000.0",
		"18446744073709551616.0", "295147905179352830000e0", "999999999999999900000.5", "[1e20]", `{"a":-1E+17}`}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 20 {
		f := math.Ldexp(float64(rng.Int64N(1<<53)), 1+rng.IntN(16)) // an integer from 2^54 to 2^69
		inputs = append(inputs, strconv.FormatFloat(f, 'e', -1, 64))
	}
	for _, in := range inputs {
		out, err := infertrail.Canonicalize([]byte(in))
		if err != nil {
			t.Errorf("Canonicalize(%s): %v", in, err)
			continue
		}
		again, err := infertrail.Canonicalize(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Errorf("Canonicalize(%s) = %s, but Canonicalize(%s) = %s, %v", in, out, out, again, err)
		}
	}
}

// utf16Compare orders strings by UTF-16 code units, the reference for CompareKeys.
func utf16Compare(a, b string) int {
	return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// randomKey makes a short string from characters chosen to sit on either
// side of the places where UTF-8 and UTF-16 order differ.
func randomKey(rng *rand.Rand) string {
	pool := []rune{'a', 'b', 'A', '0', '\n', 0x7f, 0xe9, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xf8ff, 0xfb2a, 0xfffd, 0xffff,
		0x10000, 0x1f600, 0x1f602, 0x10ffff, 0x20000}
	n := rng.IntN(4)
	r := make([]rune, n)
	for i := range r {
		if rng.IntN(3) == 0 {
			r[i] = rune(rng.IntN(0x110000))
			if r[i] >= 0xd800 && r[i] < 0xe000 {
				r[i] = 0xe000 + r[i]&0xff
			}
		} else {
			r[i] = pool[rng.IntN(len(pool))]
		}
	}
	return string(r)
}

func TestCompareKeys(t *testing.T) {
	fixed := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "a", -1},
		{"a", "b", -1},
		{"a", "ab", -1},
		{"B", "a", -1},
		{"\U0001F600", "\ue000", -1},
		{"\U0001F600", "\uffff", -1},
		{"\ud7ff", "\U00010000", -1},
		{"\U0001F600", "\U0001F602", -1},
		{"\U00010000", "\U0010FFFF", -1},
		{"x\U0001F600", "x\ue000", -1},
		{"peach", "péché", -1},
		{"péché", "pêche", -1},
		{"\u00e9", "e\u0301", 1},
	}
	for _, tt := range fixed {
		if got := sign(infertrail.CompareKeys(tt.a, tt.b)); got != tt.want {
			t.Errorf("CompareKeys(%+q, %+q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := sign(infertrail.CompareKeys(tt.b, tt.a)); got != -tt.want {
			t.Errorf("CompareKeys(%+q, %+q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		a, b := randomKey(rng), randomKey(rng)
		if rng.IntN(4) == 0 {
			b = a + randomKey(rng)
		}
		ab, ba := sign(infertrail.CompareKeys(a, b)), sign(infertrail.CompareKeys(b, a))
		if ab != -ba {
			t.Fatalf("CompareKeys(%+q, %+q) = %d but reversed = %d", a, b, ab, ba)
		}
		if want := sign(utf16Compare(a, b)); ab != want {
			t.Fatalf("CompareKeys(%+q, %+q) = %d, UTF-16 order says %d", a, b, ab, want)
		}
		if infertrail.CompareKeys(a, a) != 0 {
			t.Fatalf("CompareKeys(%+q, itself) != 0", a)
		}
	}
}

// TestAppendString checks the string form on its own.
func TestAppendString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{"\x00\x1f\b\f\n\r\t", `"\u0000\u001f\b\f\n\r\t"`},
		{`"\`, `"\"\\"`},
		{"/<>&\u2028\u2029", "\"/<>&\u2028\u2029\""},
		{"\x7f é \U0001F600", "\"\x7f é \U0001F600\""},
		{"bad \xff byte", "\"bad \ufffd byte\""},
	}
	for _, tt := range tests {
		if got := infertrail.AppendString([]byte("x"), tt.in); string(got) != "x"+tt.want {
			t.Errorf("AppendString(%+q) = %s, want %s", tt.in, got[1:], tt.want)
		}
	}
}

// FuzzAppendString holds AppendString to another implementation: the
// RFC 8785 form, by github.com/gowebpki/jcs, of what encoding/json writes
// for the string (both write U+FFFD for bytes that are not UTF-8). The
// seeds put each kind of byte that needs care at every position of the
// first eight-byte words, where the fast path hands over to the slow one.
func FuzzAppendString(f *testing.F) {
	for _, special := range []string{`"`, `\`, "\x00", "\x1f", "\n", "\x7f", "é", "\U0001F600", "\xff", "\xe2\x80", "\u2028"} {
		for at := range 17 {
			f.Add(strings.Repeat("a", at) + special + strings.Repeat("b", 17-at))
		}
	}
	f.Add(strings.Repeat("Invoice 7 from ACME; net 30 days.\n", 9))
	f.Fuzz(func(t *testing.T, s string) {
		raw, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		want, err := jcs.Transform(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := infertrail.AppendString([]byte("x"), s); !bytes.Equal(got[1:], want) {
			t.Fatalf("AppendString(%+q) = %s, want %s", s, got[1:], want)
		}
	})
}

// genJSON writes a random JSON value with random white space and a mix of
// number and string spellings, for comparison with another implementation.
type genJSON struct {
	rng *rand.Rand
	buf []byte
}

func (g *genJSON) ws() {
	for g.rng.IntN(4) == 0 {
		g.buf = append(g.buf, " \t\r\n"[g.rng.IntN(4)])
	}
}

func (g *genJSON) str(key bool) {
	g.buf = append(g.buf, '"')
	n := g.rng.IntN(6)
	if key {
		n = g.rng.IntN(3)
	}
	for range n {
		switch g.rng.IntN(12) {
		case 0:
			g.buf = fmt.Appendf(g.buf, `\u%04x`, g.rng.IntN(0x20))
		case 1:
			g.buf = append(g.buf, []string{`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`}[g.rng.IntN(8)]...)
		case 2:
			r := rune(0x10000 + g.rng.IntN(0x100000))
			r1, r2 := utf16.EncodeRune(r)
			if g.rng.IntN(2) == 0 {
				g.buf = fmt.Appendf(g.buf, `\u%04x\u%04X`, r1, r2)
			} else {
				g.buf = append(g.buf, string(r)...)
			}
		case 3:
			r := rune(0x80 + g.rng.IntN(0xd800-0x80))
			if g.rng.IntN(2) == 0 {
				r = rune(0xe000 + g.rng.IntN(0x2000))
			}
			if g.rng.IntN(2) == 0 {
				g.buf = fmt.Appendf(g.buf, `\u%04x`, r)
			} else {
				g.buf = append(g.buf, string(r)...)
			}
		default:
			g.buf = append(g.buf, "abcAB_.01 <>&'"[g.rng.IntN(14)])
		}
	}
	g.buf = append(g.buf, '"')
}

func (g *genJSON) number() {
	switch g.rng.IntN(6) {
	case 0:
		g.buf = strconv.AppendInt(g.buf, g.rng.Int64N(1<<53)-1<<52, 10)
	case 1:
		g.buf = strconv.AppendFloat(g.buf, math.Float64frombits(g.rng.Uint64()&^(0x7ff<<52)|uint64(g.rng.IntN(0x7ff))<<52), 'g', -1, 64)
	case 2:
		g.buf = strconv.AppendFloat(g.buf, g.rng.NormFloat64()*1e6, 'f', g.rng.IntN(12), 64)
	case 3:
		g.buf = strconv.AppendFloat(g.buf, g.rng.NormFloat64(), 'E', g.rng.IntN(20), 64)
	case 4:
		g.buf = fmt.Appendf(g.buf, "%d.%de%+d", g.rng.IntN(1000), g.rng.IntN(1000), g.rng.IntN(60)-30)
	default:
		g.buf = append(g.buf, []string{"0", "-0", "0.0", "-0.0", "1e21", "1e-7", "1E+2", "100", "5e-324"}[g.rng.IntN(9)]...)
	}
}

func (g *genJSON) value(depth int) {
	g.ws()
	k := g.rng.IntN(9)
	if depth > 4 {
		k = 2 + g.rng.IntN(7)
	}
	switch k {
	case 0:
		g.buf = append(g.buf, '{')
		n := g.rng.IntN(6)
		seen := map[string]bool{}
		first := true
		for range n {
			mark := len(g.buf)
			if !first {
				g.buf = append(g.buf, ',')
			}
			g.ws()
			ks := len(g.buf)
			g.str(true)
			var name string
			if err := json.Unmarshal(g.buf[ks:], &name); err != nil || seen[name] {
				g.buf = g.buf[:mark] // skip a duplicate name
				continue
			}
			seen[name] = true
			first = false
			g.ws()
			g.buf = append(g.buf, ':')
			g.value(depth + 1)
		}
		g.ws()
		g.buf = append(g.buf, '}')
	case 1:
		g.buf = append(g.buf, '[')
		for i := range g.rng.IntN(5) {
			if i > 0 {
				g.buf = append(g.buf, ',')
			}
			g.value(depth + 1)
		}
		g.ws()
		g.buf = append(g.buf, ']')
	case 2, 3:
		g.str(false)
	case 4, 5, 6:
		g.number()
	default:
		g.buf = append(g.buf, []string{"true", "false", "null"}[g.rng.IntN(3)]...)
	}
	g.ws()
}

// TestCanonicalizeAgainstJCS compares with github.com/gowebpki/jcs on
// generated values: both must give the same bytes wherever both accept.
func TestCanonicalizeAgainstJCS(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	compared := 0
	for i := range 20000 {
		g := &genJSON{rng: rng}
		if i%2 == 0 {
			g.value(0)
		} else {
			g.buf = append(g.buf, '{')
			g.buf = append(g.buf, `"k":`...)
			g.value(1)
			g.buf = append(g.buf, '}')
		}
		ours, err := infertrail.Canonicalize(g.buf)
		theirs, jerr := jcs.Transform(g.buf)
		switch {
		case err == nil && jerr == nil:
			compared++
			if !bytes.Equal(ours, theirs) {
				t.Fatalf("input %s\n ours   %s\n theirs %s", g.buf, ours, theirs)
			}
		case err == nil && jerr != nil:
			t.Fatalf("input %s: we accept (%s), gowebpki/jcs refuses: %v", g.buf, ours, jerr)
		case err != nil && jerr == nil:
			if !strings.Contains(err.Error(), "2^53") {
				t.Fatalf("input %s: we refuse (%v), gowebpki/jcs accepts: %s", g.buf, err, theirs)
			}
		}
		if err == nil && !json.Valid(ours) {
			t.Fatalf("output %s is not valid JSON", ours)
		}
	}
	if compared < 15000 {
		t.Errorf("only %d of 20000 generated values compared", compared)
	}
}

func FuzzCanonicalize(f *testing.F) {
	for _, in := range jcsInputs(f) {
		f.Add(in)
	}
	for _, s := range []string{`{"a":1,"\u0061":2}`, `"\ud83d"`, `[1e400]`, `9007199254740992`, `{"\ue000":1,"\ud83d\ude00":2}`,
		`-0.0`, "\"\u2028\"", `{"b":{"d":[1,{"f":1,"e":2}],"c":2},"a":3}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := infertrail.Canonicalize(in)
		if err != nil {
			var se *infertrail.SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *SyntaxError", err)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("Canonicalize(%q) = %q, not valid JSON", in, out)
		}
		again, err := infertrail.Canonicalize(out)
		if err != nil {
			t.Fatalf("Canonicalize(%q) = %q, which does not canonicalize: %v", in, out, err)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q → %q → %q", in, out, again)
		}
		if theirs, err := jcs.Transform(in); err == nil && !bytes.Equal(theirs, out) {
			t.Fatalf("input %q\n ours   %q\n theirs %q", in, out, theirs)
		}
	})
}
