package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/infertrail/infertrail/load"
)

func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "ingest" {
		return withHint(fmt.Errorf("bench: want a subcommand"), "infertrail bench ingest --server URL")
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
	if *asJSON {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintln(stdout, string(b))
	} else {
		res.Print(stdout)
	}
	return nil
}
