package main

import (
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTLSConfig: ca_file is read as PEM roots, and a missing or non-PEM
// file is an error that names the setting.
func TestTLSConfig(t *testing.T) {
	if tc, err := tlsConfig("", false, "x"); tc != nil || err != nil {
		t.Fatalf("no settings: %v %v", tc, err)
	}
	srv := httptest.NewTLSServer(nil)
	defer srv.Close()
	dir := t.TempDir()
	good := filepath.Join(dir, "ca.pem")
	os.WriteFile(good, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	tc, err := tlsConfig(good, false, "mcp server 0 (payments)")
	if err != nil || tc.RootCAs == nil || tc.InsecureSkipVerify {
		t.Fatalf("good ca_file: %v %v", tc, err)
	}
	bad := filepath.Join(dir, "not.pem")
	os.WriteFile(bad, []byte("hello"), 0o600)
	for _, f := range []string{bad, filepath.Join(dir, "missing.pem")} {
		if _, err := tlsConfig(f, false, "mcp server 0 (payments)"); err == nil || !strings.Contains(err.Error(), "mcp server 0 (payments) ca_file") {
			t.Errorf("%s: %v", f, err)
		}
	}
}
