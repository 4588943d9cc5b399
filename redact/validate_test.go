package redact

import "testing"

func TestLuhn(t *testing.T) {
	for _, tc := range []struct {
		d    string
		want bool
	}{
		{"4248587758974927", true}, {"4248587758974928", false}, {"377933331017043", true},
		{"0", true}, {"18", true}, {"79927398713", true}, {"79927398710", false},
	} {
		if got := luhn(tc.d); got != tc.want {
			t.Errorf("luhn(%s) = %v", tc.d, got)
		}
	}
}

func TestValidators(t *testing.T) {
	for _, tc := range []struct {
		validator, s string
		want         string // the accepted span; "" for refused
	}{
		{"card", "4248 5877 5897 4927", "4248 5877 5897 4927"},
		{"card", "4248-5877-5897-4927 2030", "4248-5877-5897-4927"},
		{"card", "4248 5877-5897 4927", ""}, // mixed separators
		{"card", "424 85877 5897 4927", ""}, // odd grouping
		{"card", "0000000000000000", ""},    // no issuer
		{"card", "12345678901234567890", ""},
		{"iban", "DE90370400449639620111", "DE90370400449639620111"},
		{"iban", "DE90 3704 0044 9639 6201 11 EUR", "DE90 3704 0044 9639 6201 11"},
		{"iban", "DE90370400449639620111X", ""},
		{"iban", "DE91370400449639620111", ""},
		{"iban", "XX90370400449639620111", ""},
		{"iban", "GB31WEST12345680373016", "GB31WEST12345680373016"},
		{"phone", "+14155550123", "+14155550123"},
		{"phone", "(415) 555-0123", "(415) 555-0123"},
		{"phone", "+44 (0)20 7946 0958", "+44 (0)20 7946 0958"},
		{"phone", "030 12345678", "030 12345678"},
		{"phone", "2026-11-26", ""},
		{"phone", "26.11.2026", ""},
		{"phone", "192.168.100.200", ""},
		{"phone", "12345678901", ""},
		{"phone", "555-12-3456", ""},
		{"phone", "0.12 0.34 0.56", ""},
		{"jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"},
		{"jwt", "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJ4In0.c2ln", ""},
		{"jwt", "eyJub3QganNvbg.eyJzdWIiOiJ4In0.c2ln", ""},
		{"password", "hunter2", "hunter2"},
		{"password", "must", ""},
		{"password", "$DB_PASSWORD", ""},
		{"password", "correcthorsebatterystaple", "correcthorsebatterystaple"},
		{"mixed", "abc123", "abc123"},
		{"mixed", "abcdef", ""},
		{"token", "MUBiDwHoBhu4UxJYCmHvLNtpzDKwu3P3", "MUBiDwHoBhu4UxJYCmHvLNtpzDKwu3P3"},
		{"token", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b", ""},
		{"token", "550e8400-e29b-41d4-a716-446655440000", ""},
		{"token", "parseHttp2ResponseHeadersV3Async", ""},
		{"token", "bm90IGNyZWRlbnRpYWxzIGF0IGFsbA==", ""},
		{"basicauth", "c3ZjLXJlcG9ydGluZzpRejctdmF1bHQtUHch", "c3ZjLXJlcG9ydGluZzpRejctdmF1bHQtUHch"},
		{"basicauth", "bm90IGNyZWRlbnRpYWxzIGF0IGFsbA==", ""},
	} {
		st, en, ok := validators[tc.validator](tc.s, 0, len(tc.s))
		got := ""
		if ok {
			got = tc.s[st:en]
		}
		if got != tc.want {
			t.Errorf("%s(%q) = %q, want %q", tc.validator, tc.s, got, tc.want)
		}
	}
}

func TestIBANLengths(t *testing.T) {
	for cc, n := range ibanLengths {
		if len(cc) != 2 || n < minIBAN || n > 34 {
			t.Errorf("ibanLengths[%s] = %d", cc, n)
		}
	}
}

func TestPlaceholder(t *testing.T) {
	for _, s := range []string{"", "xxxxxxxx", "********", "<your-key>", "${API_KEY}", "YOUR_API_KEY_HERE", "sk-xxxxxxxxxxxx", "AKIAEXAMPLE12345", "password", "{{ token }}"} {
		if !placeholder(s) {
			t.Errorf("placeholder(%q) = false", s)
		}
	}
	for _, s := range []string{"hunter2", "ghp_eF7Cqurdb5w2HYItbI9C9wXsPYeZW2qgwPzE", "Qz7-vault-Pw!"} {
		if placeholder(s) {
			t.Errorf("placeholder(%q) = true", s)
		}
	}
}

func TestHasDigit8(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 8; pos++ {
			w := uint64(0x6161616161616161) &^ (0xff << (8 * pos)) // 'a' elsewhere
			w |= uint64(c) << (8 * pos)
			if got, want := hasDigit8(w), c >= '0' && c <= '9'; got != want {
				t.Fatalf("hasDigit8 with byte 0x%02x at %d = %v", c, pos, got)
			}
		}
	}
}

func TestPlainLen(t *testing.T) {
	for _, s := range []string{"", "abc", "abcdefgh", "abcdefghijklmnop\"", "abcdefgh\\ijkl", "abcdefghi\x01", "abcdefghijé", "\x1f", "~~~~~~~~\x7f~~\""} {
		want := 0
		for want < len(s) {
			c := s[want]
			if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
				break
			}
			want++
		}
		if got := plainLen([]byte(s)); got != want {
			t.Errorf("plainLen(%q) = %d, want %d", s, got, want)
		}
	}
}
