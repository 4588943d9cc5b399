package demo

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// policies are the demo's Rego policies, based on examples/policies:
// payments above 1,000 EUR need approval, only approved models, no secrets
// in prompts, and a prompt-injection guardrail.
//
//go:embed policies/*.rego
var policies embed.FS

// WritePolicies writes the demo's policies into dir (created 0700 if
// needed), replacing files of the same names, for the server's policy.dir.
func WritePolicies(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write demo policies: %w", err)
	}
	files, err := fs.Glob(policies, "policies/*.rego")
	if err != nil {
		return fmt.Errorf("write demo policies: %w", err)
	}
	for _, name := range files {
		b, err := policies.ReadFile(name)
		if err != nil {
			return fmt.Errorf("write demo policies: %w", err)
		}
		dst := filepath.Join(dir, filepath.Base(name))
		// Unchanged files keep their modification time, so that a server
		// watching the folder does not reload them.
		if old, err := os.ReadFile(dst); err == nil && string(old) == string(b) {
			continue
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			return fmt.Errorf("write demo policies: %w", err)
		}
	}
	return nil
}
