package infertrail_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
)

// TestCanonicalWalk walks canonical JSON as Canonicalize writes it, with
// escapes in names and values, nesting, and values that are not of the
// type asked for.
func TestCanonicalWalk(t *testing.T) {
	v, err := infertrail.Canonicalize([]byte(` { "b\"x" : [ 1 , { "c" : "}]\\" } , "\u00e9\n" ] , "a" : "q\"\\/t" , "d" : {} , "e" : [ ] } `))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for k, m := range infertrail.ObjectMembers(v) {
		got = append(got, string(k)+"="+string(m))
	}
	want := []string{`a="q\"\\/t"`, `b"x=[1,{"c":"}]\\"},"é\n"]`, `d={}`, `e=[]`}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("members:\n got %q\nwant %q", got, want)
	}
	if s, ok := infertrail.StringValue([]byte(`"q\"\\/t\u001f"`)); !ok || s != "q\"\\/t\x1f" {
		t.Errorf("StringValue = %q, %t", s, ok)
	}
	for _, notObject := range []string{``, `[]`, `"{}"`, `1`} {
		for k := range infertrail.ObjectMembers([]byte(notObject)) {
			t.Errorf("ObjectMembers(%s) yields %q", notObject, k)
		}
	}
	for _, notString := range []string{``, `1`, `{}`, `null`} {
		if _, ok := infertrail.StringValue([]byte(notString)); ok {
			t.Errorf("StringValue(%s) is a string", notString)
		}
	}
	if el := infertrail.SplitArray([]byte(`[1,{"a":[2,3]},"x,y"]`)); len(el) != 3 || string(el[1]) != `{"a":[2,3]}` || string(el[2]) != `"x,y"` {
		t.Errorf("SplitArray = %q", el)
	}
}

// FuzzTexts holds Texts to encoding/json's tokens: on canonical JSON, the
// strings (member names included) and number literals, in order.
func FuzzTexts(f *testing.F) {
	for _, s := range []string{`{"b\"x":[1,{"c":"}]\\"},"é\n"],"a":"q\"\\/t","d":{},"e":[]}`,
		`[-1.5e+30,true,null,false,"x",{"n":0}]`, `"\u0001"`, `12`, `[{"role":"user","parts":[{"type":"text","content":"pay 120.50 EUR"}]}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := infertrail.Canonicalize(in)
		if err != nil {
			return
		}
		var want []string
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber()
		for {
			tok, err := dec.Token()
			if err != nil {
				break
			}
			switch x := tok.(type) {
			case string:
				want = append(want, x)
			case json.Number:
				want = append(want, x.String())
			}
		}
		got := slices.Collect(infertrail.Texts(v))
		if !slices.Equal(got, want) {
			t.Fatalf("Texts(%s) = %q, want %q", v, got, want)
		}
	})
}
