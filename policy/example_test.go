package policy_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/policy"
)

// recorderFunc adapts a function to infertrail.Recorder.
type recorderFunc func(ctx context.Context, recs ...*infertrail.Record) ([]int64, error)

func (f recorderFunc) Record(ctx context.Context, recs ...*infertrail.Record) ([]int64, error) {
	return f(ctx, recs...)
}

func Example() {
	dir, err := os.MkdirTemp("", "policies")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	src := `package infertrail.tool.call

default decision := {"result": "allow"}

decision := {"result": "deny", "reasons": ["shell tools are not allowed"]} if input.tool.name == "shell"
`
	if err := os.WriteFile(filepath.Join(dir, "tools.rego"), []byte(src), 0o644); err != nil {
		log.Fatal(err)
	}

	// A real server records into the ledger; here the load records are
	// printed.
	rec := recorderFunc(func(_ context.Context, recs ...*infertrail.Record) ([]int64, error) {
		for _, r := range recs {
			fmt.Printf("recorded %s %s\n", r.Kind, r.Attributes["access.action"])
		}
		return make([]int64, len(recs)), nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, err := policy.New(ctx, policy.Config{Dir: dir, Recorder: rec, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	go e.Run(ctx) // reload when the files change

	d, err := e.Decide(ctx, infertrail.PointToolCall, map[string]any{
		"tool": map[string]any{"server": "ops", "name": "shell", "arguments": map[string]any{"cmd": "rm -rf /"}},
	})
	if err != nil {
		log.Fatal(err) // fail closed: the call must not go ahead
	}
	fmt.Println(d.Result, d.Reasons, d.PolicyID)

	d, _ = e.Decide(ctx, infertrail.PointInferenceRequest, map[string]any{"inference": map[string]any{"model": "gpt-4o"}})
	fmt.Printf("%s %q\n", d.Result, d.PolicyID)
	// Output:
	// recorded access "policy.load"
	// deny [shell tools are not allowed] infertrail.tool.call
	// allow ""
}
