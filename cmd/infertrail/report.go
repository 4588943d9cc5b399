package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/infertrail/infertrail/export"
)

// reportCmd writes a compliance report for a period (docs/report.md).
func reportCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("report", stderr)
	fromFlag := fs.String("from", "", "start of the period, RFC 3339 or a date (2026-01-01 is midnight UTC); required")
	toFlag := fs.String("to", "", "end of the period, excluded, RFC 3339 or a date; required")
	format := fs.String("format", "html", "html or json")
	out := fs.String("out", "", "write the report to `file` (default standard output)")
	controlsPath := fs.String("controls", "", "control mapping YAML `file` (default: the built-in mapping, export/controls.yaml)")
	data := fs.String("data", "", "report from the data `folder` of a server (only reads; the server may be running)")
	store := fs.String("store", "", "with --data: the store `DSN`, if not SQLite in the data folder")
	server := fs.String("server", "", "ask a running server at `URL` for the report")
	vkey := fs.String("key", "", "with --data: the log's verifier `key` to check checkpoints with (default: the data folder's key)")
	quiet := fs.Bool("q", false, "print no progress")
	token := tokenFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *fromFlag == "" || *toFlag == "" {
		return withHint(errors.New("report: --from and --to are required"), "infertrail report --from 2026-10-01 --to 2027-01-01 --data DIR --out q4.html")
	}
	from, err := parseReportTime("--from", *fromFlag)
	if err != nil {
		return err
	}
	to, err := parseReportTime("--to", *toFlag)
	if err != nil {
		return err
	}
	if !from.Before(to) {
		return withHint(fmt.Errorf("report: --from %s is not before --to %s", from.Format(time.RFC3339), to.Format(time.RFC3339)), "the period is [from, to): to is excluded")
	}
	if *format != "html" && *format != "json" {
		return withHint(fmt.Errorf("report: --format %q: want html or json", *format), "")
	}
	switch {
	case *data != "" && *server != "":
		return withHint(errors.New("give --data or --server, not both"), "")
	case *data == "" && *server == "":
		return withHint(errors.New("give --data DIR or --server URL"), "--data reads the data folder directly; --server asks a running server")
	}
	var controls export.Controls
	if *controlsPath != "" || *data != "" {
		if controls, err = export.LoadControls(*controlsPath); err != nil {
			return withHint(err, "start from the built-in mapping: docs/report.md shows its sections and metrics")
		}
	}

	var rep *export.Report
	var raw []byte // a server's answer, written as it is
	if *server != "" {
		asked := *format
		if *controlsPath != "" {
			asked = "json" // evaluated against the local mapping below
		}
		raw, err = fetchReport(ctx, *server, resolveToken(*token), from, to, asked)
		if err != nil {
			return err
		}
		if *controlsPath != "" {
			rep = &export.Report{}
			if err := json.Unmarshal(raw, rep); err != nil {
				return fmt.Errorf("report: the server's answer is not a report: %w", err)
			}
			if rep.Format != export.ReportFormat {
				return fmt.Errorf("report: the server sent a report in format %q; this version reads %q", rep.Format, export.ReportFormat)
			}
			rep.ApplyControls(controls)
			raw = nil
		}
	} else {
		rep, err = localReport(ctx, *data, *store, *vkey, from, to, controls, stderr, *quiet)
		if err != nil {
			return err
		}
	}

	var buf bytes.Buffer
	switch {
	case raw != nil:
		buf.Write(raw)
	case *format == "json":
		err = rep.WriteJSON(&buf)
	default:
		err = rep.WriteHTML(&buf)
	}
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = stdout.Write(buf.Bytes())
		return err
	}
	if err := writeSecretFile(*out, buf.Bytes()); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if rep != nil {
		attention := 0
		for _, c := range rep.Controls {
			if c.Status == export.StatusAttention {
				attention++
			}
		}
		fmt.Fprintf(stderr, "Wrote %s: %d records, %d controls (%d need attention).\n", *out, rep.Scan.Records, len(rep.Controls), attention)
	} else {
		fmt.Fprintf(stderr, "Wrote %s.\n", *out)
	}
	return nil
}

// parseReportTime parses RFC 3339, or a date as midnight UTC.
func parseReportTime(flag, s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, withHint(fmt.Errorf("report: %s %q: want an RFC 3339 time or a date", flag, s), "such as 2026-10-01T00:00:00Z or 2026-10-01")
}

// localReport builds the report from a data folder, without starting a
// log: it only reads.
func localReport(ctx context.Context, dir, dsn, vkey string, from, to time.Time, controls export.Controls, stderr io.Writer, quiet bool) (*export.Report, error) {
	var verifier note.Verifier
	if vkey != "" {
		v, err := note.NewVerifier(strings.TrimSpace(vkey))
		if err != nil {
			return nil, withHint(fmt.Errorf("verifier key: %w", err), "a verifier key looks like origin+1a2b3c4d+AbCd…; 'infertrail keys show' prints it")
		}
		verifier = v
	} else {
		dk, _, err := openDataFolder(dir, "", false, "")
		if err != nil {
			return nil, err
		}
		if verifier, err = dk.verifier(); err != nil {
			return nil, err
		}
	}
	st, closeStore, err := openToRead(ctx, dsn, dir, stderr)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	p := newProgress(stderr, quiet, "report: read")
	src := export.WithProgress(export.StoreSource(st, verifier), p.report)
	rep, err := export.BuildReport(ctx, src, from, to, controls)
	p.done()
	return rep, err
}

// fetchReport asks a server for the report: GET /v1/report.
func fetchReport(ctx context.Context, server, token string, from, to time.Time, format string) ([]byte, error) {
	base, err := url.Parse(strings.TrimSuffix(server, "/") + "/")
	if err != nil || base.Scheme != "http" && base.Scheme != "https" {
		return nil, fmt.Errorf("server URL %q: want http:// or https://", server)
	}
	u := base.JoinPath("v1", "report")
	u.RawQuery = url.Values{"from": {from.Format(time.RFC3339Nano)}, "to": {to.Format(time.RFC3339Nano)}, "format": {format}}.Encode()
	// The server reads the whole period before it answers.
	ctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := clientWithToken(token, 0).Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET v1/report: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("GET v1/report: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return nil, fmt.Errorf("server answered %d: %s", resp.StatusCode, e.Error.Message)
		}
		if resp.StatusCode == http.StatusNotFound {
			return nil, withHint(fmt.Errorf("server answered %s", resp.Status), "the server may be older than the report endpoint; run the report with --data on its data folder")
		}
		return nil, fmt.Errorf("server answered %s", resp.Status)
	}
	return b, nil
}
