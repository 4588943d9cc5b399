package infertrail_test

import (
	"errors"
	"fmt"

	"github.com/infertrail/infertrail"
)

func ExampleCanonicalize() {
	out, err := infertrail.Canonicalize([]byte(`{
		"b": [1E+2, -0, 4.50, 1e21, 0.000001, 1e-7],
		"a": "caf\u00e9 \/ \u000f",
		"\uff01": "sorts after",
		"\ud83d\ude00": "the emoji, by UTF-16 code units"
	}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(string(out))

	_, err = infertrail.Canonicalize([]byte(`{"n": [1, 2, 9007199254740993]}`))
	fmt.Println(err)
	// Output:
	// {"a":"café / \u000f","b":[100,0,4.5,1e+21,0.000001,1e-7],"😀":"the emoji, by UTF-16 code units","！":"sorts after"}
	// n[2]: integer 9007199254740993 is beyond ±(2^53-1) and would lose precision; send it as a string (at byte 13)
}

func ExampleParseRecord() {
	src := []byte(`{
		"kind": "inference",
		"id": "0193a5b0-7c1e-7000-8000-000000000001",
		"time": "2026-11-26T11:00:00.5+01:00",
		"tenant": "acme",
		"attributes": {"gen_ai.request.model": "gpt-4o", "gen_ai.request.temperature": 0.20},
		"content": {"gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]}
	}`)
	r, canon, err := infertrail.ParseRecord(src, infertrail.Limits{})
	if err != nil {
		panic(err)
	}
	fmt.Println(r.Kind, r.ID, infertrail.FormatTime(r.Time))
	fmt.Println(string(r.Attributes["gen_ai.request.temperature"]))
	fmt.Println(len(canon) < len(src))

	_, _, err = infertrail.ParseRecord([]byte(`{"kind":"inference","trace_id":"XYZ"}`), infertrail.Limits{})
	var fe *infertrail.FieldError
	fmt.Println(errors.As(err, &fe), fe.Field, errors.Is(err, infertrail.ErrInvalid))
	// Output:
	// inference 0193a5b0-7c1e-7000-8000-000000000001 2026-11-26T10:00:00.5Z
	// 0.2
	// true
	// true trace_id true
}
