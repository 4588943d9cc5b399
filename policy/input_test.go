package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/infertrail/infertrail"
)

// referenceDigest is the input digest as docs/policy.md defines it.
func referenceDigest(input map[string]any) (string, error) {
	raw, err := json.Marshal(input)
	if err != nil {
		return "", err
	}
	c, err := infertrail.Canonicalize(raw)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// checkInput checks that prepareInput digests input as the reference does,
// and gives the policy the document that was digested.
func checkInput(t *testing.T, input map[string]any) {
	t.Helper()
	want, werr := referenceDigest(input)
	got, value, err := prepareInput(input)
	if (err != nil) != (werr != nil) {
		t.Fatalf("prepareInput error %v, reference error %v", err, werr)
	}
	if err != nil {
		return
	}
	if got != want {
		t.Fatalf("digest %s, reference %s", got, want)
	}
	// The policy's view, written as JSON, is the digested document.
	j, err := ast.JSON(value)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := referenceDigest(j.(map[string]any)); err != nil || d != want {
		t.Fatalf("the policy's input has digest %s (%v), want %s", d, err, want)
	}
}

func TestPrepareInput(t *testing.T) {
	type args struct {
		AmountEUR float64 `json:"amount_eur"`
		To        string  `json:"to,omitempty"`
	}
	tests := map[string]map[string]any{
		"empty":   {},
		"scalars": {"s": "a\"b\\c\n\u2028<&>", "t": true, "f": false, "n": nil, "f64": 1200.5, "int": 7, "i64": int64(-3), "zero": math.Copysign(0, -1)},
		"numbers": {"big": 1e21, "small": 1e-7, "third": 1.0 / 3, "max": float64(1<<53 - 1), "num": json.Number("1.50"), "exp": json.Number("1E3")},
		"nested": {"messages": []any{map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "hé 🎉"}}}},
			"tags": []string{"b", "a"}},
		"key order":        {"b": 1, "a": 2, "é": 3, "\U0001F600": 4, "\uffff": 5, "": 6},
		"typed values":     {"tool": map[string]any{"arguments": args{AmountEUR: 1200}}, "list": []map[string]any{{"x": 1}}, "m": map[string]string{"k": "v"}},
		"invalid UTF-8":    {"s": "a\xffb", "k\xfe": "v"},
		"nil slices":       {"a": []any(nil), "m": map[string]any(nil), "s": []string(nil)},
		"big integer":      {"n": int64(1) << 60},
		"unsafe integer":   {"n": int64(1)<<53 + 1},
		"big json.Number":  {"n": json.Number("123456789012345678901234567890")},
		"uint":             {"n": uint(5)},
		"NaN":              {"n": math.NaN()},
		"unsupported type": {"c": make(chan int)},
	}
	for name, input := range tests {
		t.Run(name, func(t *testing.T) { checkInput(t, input) })
	}
}

func FuzzPrepareInput(f *testing.F) {
	f.Add([]byte(`{"point":"tool.call","tool":{"name":"pay","arguments":{"amount_eur":1200}}}`))
	f.Add([]byte(`{"a":[1,2.5,"x",null,true,{"b":{}}],"\u00e9":"\ud83d\ude00","n":1e400}`))
	f.Add([]byte(`{"z":-0,"y":0.000001,"x":123456789012345678}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, useNumber := range []bool{false, true} {
			var input map[string]any
			d := json.NewDecoder(bytes.NewReader(b))
			if useNumber {
				d.UseNumber()
			}
			if d.Decode(&input) != nil || input == nil {
				return
			}
			checkInput(t, input)
		}
	})
}
