package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/infertrail/infertrail/capture/openai/openaitest"
	"github.com/infertrail/infertrail/load"
)

func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "gateway" {
		return benchGateway(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "ingest" {
		return withHint(fmt.Errorf("bench: want a subcommand: ingest or gateway"), "infertrail bench ingest --server URL")
	}
	fs := newFlagSet("bench ingest", stderr)
	server := fs.String("server", "http://127.0.0.1:8470", "server `URL`")
	clients := fs.Int("clients", 16, "concurrent clients")
	batch := fs.Int("batch", 100, "records per request")
	records := fs.Int64("records", 0, "stop after this many records (0: no limit)")
	duration := fs.Duration("duration", 0, "stop after this long (0: no limit; default 10s when --records is 0)")
	rate := fs.Float64("rate", 0, "offered load in records/s (0: as fast as acknowledged, closed loop)")
	mix := fs.String("mix", "fixed", "traffic: fixed (1 record of --content-bytes) or agent (realistic agent sessions)")
	contentBytes := fs.Int("content-bytes", 1024, "content per record with --mix fixed")
	ndjson := fs.Bool("ndjson", false, "send NDJSON instead of JSON arrays")
	seed := fs.Int64("seed", 0, "generator seed; the same seed sends the same records (0: a new random seed)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	token := tokenFlag(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	m, err := load.ParseMix(*mix)
	if err != nil {
		return err
	}
	if *seed == 0 {
		*seed = rand.Int64N(1<<62) + 1
	}
	if *records == 0 && *duration == 0 {
		*duration = 10_000_000_000
	}
	cfg := load.Config{
		Server: *server, Token: resolveToken(*token), Clients: *clients, BatchSize: *batch,
		Records: *records, Duration: *duration, Rate: *rate, NDJSON: *ndjson,
		Gen: load.GenConfig{Mix: m, Seed: *seed, ContentBytes: *contentBytes},
	}
	res, err := load.Run(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	printResult(stdout, res, *asJSON)
	return nil
}

// benchGateway measures what the LLM gateway of a running server adds to
// a call, against the same call made to its upstream directly. Without
// --direct it serves a scripted OpenAI upstream itself, on
// --upstream-listen, which the server must have as its OpenAI upstream.
func benchGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench gateway", stderr)
	server := fs.String("server", "http://127.0.0.1:8470", "server `URL` (its gateway, if on a listener of its own)")
	direct := fs.String("direct", "", "the OpenAI-compatible upstream's base `URL` (such as http://127.0.0.1:8000/v1); empty: serve a scripted one on --upstream-listen")
	upListen := fs.String("upstream-listen", "127.0.0.1:8471", "`address` of the scripted upstream; start the server with --openai-upstream http://ADDRESS/v1")
	calls := fs.Int("calls", 3000, "calls to each of the upstream and the gateway, one at a time")
	block := fs.Int("block", 300, "calls to one before the other's turn")
	stream := fs.Bool("stream", false, "streamed responses: measure the time to the first event")
	apiKey := fs.String("api-key", "sk-infertrail-bench", "provider key sent with each call (to the scripted upstream, any)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	token := tokenFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *calls < 1 || *block < 1 {
		return fmt.Errorf("bench gateway: --calls %d, --block %d: both must be at least 1", *calls, *block)
	}
	base := strings.TrimSuffix(*direct, "/")
	if base == "" {
		ln, err := net.Listen("tcp", *upListen)
		if err != nil {
			return withHint(fmt.Errorf("bench gateway: scripted upstream: %w", err), "choose another address with --upstream-listen, or give --direct")
		}
		srv := &http.Server{Handler: openaitest.BenchmarkScript(*stream), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		base = "http://" + ln.Addr().String() + "/v1"
		fmt.Fprintf(stderr, "scripted upstream on %s (the server's --openai-upstream)\n", base)
	}
	res, err := load.Gateway(ctx, load.GatewayConfig{
		Gateway: strings.TrimSuffix(*server, "/") + "/openai/v1/chat/completions", Direct: base + "/chat/completions",
		Token: resolveToken(*token), APIKey: *apiKey, Calls: *calls, Block: *block, Stream: *stream,
	})
	if err != nil {
		return withHint(err, "the server's OpenAI upstream must be "+base+", and the token needs the gateway role")
	}
	printResult(stdout, res, *asJSON)
	return nil
}

// printResult prints a benchmark's result for people, or as JSON.
func printResult(w io.Writer, res interface{ Print(io.Writer) }, asJSON bool) {
	if asJSON {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintln(w, string(b))
		return
	}
	res.Print(w)
}
