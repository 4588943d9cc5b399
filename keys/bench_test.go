package keys_test

import (
	"testing"

	"github.com/infertrail/infertrail/keys"
)

func BenchmarkSeal(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"1KiB", 1 << 10}, {"16KiB", 16 << 10}} {
		b.Run(size.name, func(b *testing.B) {
			c := newCipher(b)
			plain, aad := make([]byte, size.n), []byte("scope-42/record-7")
			dst := make([]byte, 0, size.n+keys.Overhead)
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				dst = c.Seal(dst[:0], plain, aad)
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"1KiB", 1 << 10}, {"16KiB", 16 << 10}} {
		b.Run(size.name, func(b *testing.B) {
			c := newCipher(b)
			aad := []byte("scope-42/record-7")
			sealed := c.Seal(nil, make([]byte, size.n), aad)
			dst := make([]byte, 0, size.n)
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if dst, err = c.Open(dst[:0], sealed, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkWrap(b *testing.B) {
	k := newKeyring(b)
	dek, err := keys.NewDataKey()
	if err != nil {
		b.Fatal(err)
	}
	aad := []byte("0193a5b0-7c1e-7000-8000-000000000001")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Wrap(b.Context(), dek, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnwrap(b *testing.B) {
	k := newKeyring(b)
	aad := "0193a5b0-7c1e-7000-8000-000000000001"
	_, wrapped := wrapNew(b, k, aad)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Unwrap(b.Context(), wrapped, []byte(aad)); err != nil {
			b.Fatal(err)
		}
	}
}
