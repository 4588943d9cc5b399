// Command infertrail runs InferTrail, an inference-level audit trail: the
// server, offline verification, key management and a load tool. It is the
// only place that reads flags, environment variables and configuration
// files.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `InferTrail: an inference-level audit trail.

Usage:
  infertrail serve   [--data DIR] [--listen ADDR] [--config FILE] [--store DSN]
  infertrail demo    [--data DIR] [--listen ADDR] [--once]
  infertrail verify  BUNDLE.zip [--key VKEY] [--witness WKEY]… | (--data DIR [--store DSN] [--key VKEY] | --server URL --key VKEY [--token T]) [--held FILE]… [--witness WKEY]…
  infertrail export  (--trace ID | --session ID | --seq N[,N…]) [--content] --out FILE.zip (--data DIR | --server URL)
  infertrail report  --from TIME --to TIME [--format html|json] [--out FILE] [--controls FILE] (--data DIR [--store DSN] | --server URL)
  infertrail keys show|list-kek|rotate-kek|rewrap|remove-kek ID [--data DIR] [--store DSN]
  infertrail erase   --scope tenant=T[,session=S] --reason TEXT [--authority TEXT] (--data DIR | --server URL)
  infertrail hold    add --scope S --reason TEXT | list [--tenant T] [--all] | release ID --tenant T  (--data DIR | --server URL)
  infertrail retention run [--data DIR] [--config FILE]
  infertrail mcp wrap --name NAME (--data DIR | --server URL) [--agent ID] -- SERVER-COMMAND [ARGS…]
  infertrail tokens  create --role R[,R] --tenant T --name N [--expires 90d] | list [--all] | revoke ID  (--data DIR | --server URL)
  infertrail approvals list [--status pending] | approve ID --rationale TEXT | reject ID --rationale TEXT  (--data DIR | --server URL)
  infertrail query   [--trace ID] [--session ID] [--actor A] [--model M] [--tool T] [--kind K] [--finding D] [--q WORDS] [--from T] [--to T] [--json] (--data DIR | --server URL)
  infertrail show    TRACE_OR_SESSION [--session] [--json] (--data DIR | --server URL)
  infertrail findings [--detector D] [--seq N] [--detect TRACE_OR_SESSION] [--json] (--data DIR | --server URL)
  infertrail migrate --store postgres://…
  infertrail backup  --out FILE [--data DIR] [--store sqlite:FILE] [-q]
  infertrail copy    --to DSN [--data DIR] [--store DSN] [-q]
  infertrail bench ingest --server URL [--clients N] [--batch N] [--records N | --duration D] [--rate R]
  infertrail bench gateway --server URL [--direct URL | --upstream-listen ADDR] [--calls N] [--stream]
  infertrail version

Commands that take --server send an API token from --token or $INFERTRAIL_TOKEN.
Run 'infertrail COMMAND -h' for a command's flags.
`

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// hintError is an error with a hint for the user.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

func withHint(err error, hint string) error { return &hintError{err: err, hint: hint} }

// exitError carries a specific exit code.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err == nil {
		return
	}
	var ee exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "infertrail: error: %v\n", err)
	var he *hintError
	if errors.As(err, &he) && he.hint != "" {
		fmt.Fprintf(os.Stderr, "infertrail: hint: %s\n", he.hint)
	}
	os.Exit(1)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError{2}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, stdout, stderr)
	case "demo":
		return demoCmd(ctx, rest, stdout, stderr)
	case "verify":
		return verify(ctx, rest, stdout, stderr)
	case "export":
		return exportCmd(ctx, rest, stdout, stderr)
	case "report":
		return reportCmd(ctx, rest, stdout, stderr)
	case "keys":
		return keysCmd(ctx, rest, stdout, stderr)
	case "erase":
		return eraseCmd(ctx, rest, stdout, stderr)
	case "hold":
		return holdCmd(ctx, rest, stdout, stderr)
	case "retention":
		return retentionCmd(ctx, rest, stdout, stderr)
	case "tokens":
		return tokensCmd(ctx, rest, stdout, stderr)
	case "approvals":
		return approvalsCmd(ctx, rest, stdout, stderr)
	case "mcp":
		return mcpCmd(ctx, rest, stdout, stderr)
	case "query":
		return queryCmd(ctx, rest, stdout, stderr)
	case "show":
		return showCmd(ctx, rest, stdout, stderr)
	case "findings":
		return findingsCmd(ctx, rest, stdout, stderr)
	case "migrate":
		return migrate(ctx, rest, stdout, stderr)
	case "backup":
		return backupCmd(ctx, rest, stdout, stderr)
	case "copy":
		return copyCmd(ctx, rest, stdout, stderr)
	case "bench":
		return bench(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "infertrail %s\n", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return withHint(fmt.Errorf("unknown command %q", cmd), "run 'infertrail help' for the commands")
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("infertrail "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlagsArg parses the flags of a command that takes one optional
// argument, before or after them; it returns the argument, or "".
func parseFlagsArg(fs *flag.FlagSet, args []string) (string, error) {
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() == 0 {
		return "", nil
	}
	arg := fs.Arg(0)
	if err := parseFlags(fs, fs.Args()[1:]); err != nil {
		return "", err
	}
	return arg, nil
}

// parseFlags parses args, refusing stray positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return withHint(fmt.Errorf("unexpected argument %q", fs.Arg(0)), "run '"+fs.Name()+" -h' for its flags")
	}
	return nil
}
