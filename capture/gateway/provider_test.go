package gateway

import "testing"

func TestBodyValue(t *testing.T) {
	for _, tc := range []struct {
		body, want string
		ok         bool
	}{
		{"{\n  \"b\": 1.50,\n  \"a\": \"\\u00e9\\/\"\n}\n", `{"a":"é/","b":1.5}`, true},
		{`[]`, `[]`, true},
		// JSON that records cannot hold as it is is kept as text.
		{`{"a":1,"a":2}`, `"{\"a\":1,\"a\":2}"`, false},
		{`{"n":9007199254740993}`, `"{\"n\":9007199254740993}"`, false},
		{"upstream \xff error", "\"upstream \uFFFD error\"", false},
		{`{"a":`, `"{\"a\":"`, false},
		{"", `""`, false},
	} {
		v, ok := BodyValue([]byte(tc.body))
		if string(v) != tc.want || ok != tc.ok {
			t.Errorf("BodyValue(%q) = %s, %t; want %s, %t", tc.body, v, ok, tc.want, tc.ok)
		}
	}
}
