package keys_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/infertrail/infertrail/keys"
)

// leaks reports whether out shows key in any usual encoding.
func leaks(out string, key []byte) bool {
	lower := strings.ToLower(out)
	for _, enc := range []string{
		hex.EncodeToString(key),
		base64.StdEncoding.EncodeToString(key),
		base64.RawURLEncoding.EncodeToString(key),
		fmt.Sprint([]byte(key)),
		fmt.Sprintf("%#v", []byte(key)),
		fmt.Sprintf("%v", [32]byte(key)),
		string(key),
	} {
		if strings.Contains(lower, strings.ToLower(enc)) {
			return true
		}
	}
	return false
}

// printed gives v as every fmt verb and both slog handlers show it.
func printed(v any) map[string]string {
	out := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "% x", "%d", "%T"} {
		out[verb] = fmt.Sprintf(verb, v)
	}
	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("m", "v", v)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("m", "v", v)
	out["slog text"], out["slog json"] = text.String(), js.String()
	return out
}

func TestNothingPrintsKeyBytes(t *testing.T) {
	k := newKeyring(t)
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(k.Path())
	if err != nil {
		t.Fatal(err)
	}
	var kekKeys [][]byte
	for _, line := range strings.Split(string(src), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && strings.HasPrefix(f[0], "kek-") {
			b, err := hex.DecodeString(f[2])
			if err != nil {
				t.Fatal(err)
			}
			kekKeys = append(kekKeys, b)
		}
	}
	if len(kekKeys) != 2 {
		t.Fatalf("found %d keys in the file", len(kekKeys))
	}
	dek, err := keys.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := keys.NewCipher(dek)
	if err != nil {
		t.Fatal(err)
	}
	secrets := append(kekKeys, dek)

	values := map[string]any{
		"*Keyring":  k,
		"KEK":       keys.KEK(k),
		"[]KEKInfo": k.List(),
		"KEKInfo":   k.List()[0],
		"DataKey":   dek,
		"*Cipher":   c,
		"struct": struct {
			K *keys.Keyring
			D keys.DataKey
			C *keys.Cipher
		}{k, dek, c},
		"[]DataKey":    []keys.DataKey{dek},
		"map Cipher":   map[string]*keys.Cipher{"scope": c},
		"Cipher deref": *c,
	}
	for name, v := range values {
		for how, out := range printed(v) {
			for _, s := range secrets {
				if leaks(out, s) {
					t.Errorf("%s printed with %s shows key bytes: %s", name, how, out)
				}
			}
		}
	}
	if got := fmt.Sprint(k); !strings.Contains(got, k.Path()) || !strings.Contains(got, k.Current()) {
		t.Errorf("Keyring prints as %q; want its path and current KEK", got)
	}
	if got := fmt.Sprint(dek); got != "[redacted]" {
		t.Errorf("DataKey prints as %q", got)
	}
	if b, err := json.Marshal(k.List()[0]); err != nil || !strings.Contains(string(b), k.List()[0].ID) {
		t.Errorf("KEKInfo JSON: %s, %v", b, err)
	}
}
