package policy_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/infertrail/infertrail/policy"
)

// checkDecode checks that DecodeObject gives what json.Unmarshal into a
// map[string]any gives, error or not.
func checkDecode(t *testing.T, data []byte) {
	t.Helper()
	var want map[string]any
	werr := json.Unmarshal(data, &want)
	got, err := policy.DecodeObject(data)
	if (err != nil) != (werr != nil) {
		t.Fatalf("DecodeObject(%q): error %v, json.Unmarshal's %v", data, err, werr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeObject(%q) = %#v, json.Unmarshal gives %#v", data, got, want)
	}
}

func TestDecodeObject(t *testing.T) {
	deep := strings.Repeat(`{"a":[`, 5000)
	tests := map[string]string{
		"request":            benchRequest,
		"empty":              `{}`,
		"spaces":             " \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" : { } , \"c\" : [ ] } \n",
		"scalars":            `{"t":true,"f":false,"n":null,"i":-12,"x":0.5e-3,"y":1E+2,"z":-0}`,
		"duplicate names":    `{"a":1,"a":2}`,
		"escapes":            `{"s":"\"\\\/\b\f\n\r\t\u00e9\u2028","\u0041":"x"}`,
		"surrogates":         `{"pair":"\ud83d\ude00","lone":"\ud83d","low":"\ude00x","twice":"\ud83d\ud83d\ude00","next":"\ud83d\n"}`,
		"UTF-8":              `{"s":"hé 🎉","bad":"a` + "\xff\xfe" + `b","surrogate":"` + "\xed\xa0\x80" + `","k` + "\xc3" + `":1}`,
		"out of range":       `{"a":1e400,"b":[1,-1e999],"c":"after"}`,
		"underflow":          `{"a":1e-400}`,
		"null":               `null`,
		"array":              `[1]`,
		"string":             `"a"`,
		"number":             `1`,
		"true":               `true`,
		"nested 10000 deep":  deep + strings.Repeat(`]}`, 5000),
		"nested 10001 deep":  `[` + deep + strings.Repeat(`]}`, 5000) + `]`,
		"empty input":        ``,
		"trailing comma":     `{"a":1,}`,
		"trailing text":      `{"a":1} x`,
		"two values":         `{}{}`,
		"unterminated":       `{"a":"b`,
		"control character":  "{\"a\":\"b\nc\"}",
		"bad escape":         `{"a":"\x"}`,
		"short \\u":          `{"a":"\u12"}`,
		"bad \\u after high": `{"a":"\ud83d\uzzzz"}`,
		"leading zero":       `{"a":01}`,
		"bare minus":         `{"a":-}`,
		"dot without digits": `{"a":1.}`,
		"exponent no digits": `{"a":1e+}`,
		"bad literal":        `{"a":tru}`,
		"missing colon":      `{"a" 1}`,
		"unquoted name":      `{a:1}`,
		"byte order mark":    "\xef\xbb\xbf{}",
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) { checkDecode(t, []byte(data)) })
	}
	if _, err := policy.DecodeObject([]byte(benchRequest)); err != nil {
		t.Errorf("the benchmark's request: %v", err)
	}
}

func FuzzDecodeObject(f *testing.F) {
	f.Add([]byte(benchRequest))
	f.Add([]byte(`{"a":[1,2.5,"x",null,true,{"b":{}}],"\u00e9":"\ud83d\ude00","n":1e400}`))
	f.Add([]byte(`{"s":"a\\\"\u0000` + "\xff" + `","z":-0.0e-0}`))
	f.Fuzz(func(t *testing.T, data []byte) { checkDecode(t, data) })
}

// BenchmarkDecodeObject compares DecodeObject with json.Unmarshal on
// BenchmarkDecide's chat request.
func BenchmarkDecodeObject(b *testing.B) {
	data := []byte(benchRequest)
	b.Run("DecodeObject", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := policy.DecodeObject(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
