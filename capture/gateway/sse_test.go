package gateway

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestSSEParser(t *testing.T) {
	type ev struct{ name, data string }
	for _, tc := range []struct {
		name, in string
		want     []ev
		dropped  int
	}{
		{"data only", "data: {\"a\":1}\n\ndata: [DONE]\n\n", []ev{{"", `{"a":1}`}, {"", "[DONE]"}}, 0},
		{"named", "event: message_start\ndata: {}\n\n", []ev{{"message_start", "{}"}}, 0},
		{"crlf", "event: x\r\ndata: 1\r\n\r\n", []ev{{"x", "1"}}, 0},
		{"cr", "event: x\rdata: 1\r\r", []ev{{"x", "1"}}, 0},
		{"multiline data", "data: a\ndata: b\n\n", []ev{{"", "a\nb"}}, 0},
		{"comment and no space", ": ping\ndata:x\n\n", []ev{{"", "x"}}, 0},
		{"no data is no event", "event: ping\n\n", nil, 0},
		{"unfinished event is not dispatched", "data: a\n", nil, 0},
		{"too big", "event: big\ndata: 0123456789abcdef0123456789\n\ndata: ok\n\n", []ev{{"big", ""}, {"", "ok"}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every split of the input into two reads must give the same events.
			for cut := 0; cut <= len(tc.in); cut++ {
				var got []ev
				p := NewSSEParser(16, func(n string, d []byte) { got = append(got, ev{n, string(d)}) })
				p.Feed([]byte(tc.in[:cut]))
				p.Feed([]byte(tc.in[cut:]))
				if !slices.Equal(got, tc.want) || p.dropped != tc.dropped {
					t.Fatalf("cut %d: got %q dropped %d, want %q dropped %d", cut, got, p.dropped, tc.want, tc.dropped)
				}
			}
		})
	}
}

func TestSSEParserByteByByte(t *testing.T) {
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, "event: e%d\r\ndata: {\"i\":%d}\r\n\r\n", i, i)
	}
	n := 0
	p := NewSSEParser(1<<10, func(name string, d []byte) {
		if name != fmt.Sprintf("e%d", n) || string(d) != fmt.Sprintf(`{"i":%d}`, n) {
			t.Fatalf("event %d: %q %q", n, name, d)
		}
		n++
	})
	for _, c := range []byte(b.String()) {
		p.Feed([]byte{c})
	}
	if n != 100 {
		t.Fatalf("got %d events, want 100", n)
	}
}

func FuzzSSEParser(f *testing.F) {
	f.Add([]byte("event: a\ndata: b\n\n"), 3)
	f.Fuzz(func(t *testing.T, in []byte, cut int) {
		var whole, split []string
		p := NewSSEParser(64, func(n string, d []byte) { whole = append(whole, n+"\x00"+string(d)) })
		p.Feed(in)
		if cut < 0 || cut > len(in) {
			cut = len(in) / 2
		}
		q := NewSSEParser(64, func(n string, d []byte) { split = append(split, n+"\x00"+string(d)) })
		q.Feed(in[:cut])
		q.Feed(in[cut:])
		if !slices.Equal(whole, split) {
			t.Fatalf("split at %d changes the events: %q vs %q", cut, whole, split)
		}
	})
}
