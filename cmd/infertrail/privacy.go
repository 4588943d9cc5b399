package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/keys"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/redact"
	"github.com/infertrail/infertrail/store/sqlite"
)

// privacyConfig is the privacy: section of the configuration file.
type privacyConfig struct {
	// Scope names the erasure scope of content besides its tenant (default
	// [session]); see ledger.Config.ScopeFields.
	Scope     []string          `yaml:"scope"`
	Retention []retentionConfig `yaml:"retention"`
	// RetentionInterval is how often serve runs the retention job (default 1h).
	RetentionInterval duration `yaml:"retention_interval"`
	// Profile is the default capture profile: minimal, standard (default)
	// or forensic; Tenants sets it per tenant.
	Profile   string                   `yaml:"profile"`
	Tenants   map[string]tenantPrivacy `yaml:"tenants"`
	Redaction redactionConfig          `yaml:"redaction"`
}

type tenantPrivacy struct {
	Profile string `yaml:"profile"`
}

// redactionConfig is privacy.redaction: see docs/redaction.md.
type redactionConfig struct {
	RulesFiles          []string                     `yaml:"rules_files"`
	ReplaceDefaultRules bool                         `yaml:"replace_default_rules"`
	Disable             []string                     `yaml:"disable"`
	Actions             map[string]string            `yaml:"actions"`
	Fields              map[string]map[string]string `yaml:"fields"`
}

// rules returns the redaction rule set the section configures: nil for
// the default rules.
func (p *privacyConfig) rules() (*redact.Rules, error) {
	if len(p.Redaction.RulesFiles) == 0 && !p.Redaction.ReplaceDefaultRules {
		return nil, nil
	}
	var rules *redact.Rules
	if !p.Redaction.ReplaceDefaultRules {
		rules = redact.DefaultRules()
	}
	for _, path := range p.Redaction.RulesFiles {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("config privacy.redaction.rules_files: %w", err)
		}
		extra, err := redact.LoadRules(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("config privacy.redaction.rules_files: %s: %w", path, err)
		}
		if rules == nil {
			rules = extra
		} else {
			rules = rules.Merge(extra)
		}
	}
	if rules == nil {
		return nil, errors.New("config privacy.redaction: replace_default_rules needs rules_files")
	}
	return rules, nil
}

// capture builds the capture profiles and redaction of the privacy section;
// fingerprints are keyed by the server secret, as the gateway's are.
func (p *privacyConfig) capture(secret []byte) (*redact.Capture, error) {
	rc := redact.Config{FingerprintSecret: secret, Disable: p.Redaction.Disable}
	var err error
	if rc.Rules, err = p.rules(); err != nil {
		return nil, err
	}
	if len(p.Redaction.Actions) > 0 {
		rc.Actions = map[string]redact.Action{}
		for k, a := range p.Redaction.Actions {
			rc.Actions[k] = redact.Action(a)
		}
	}
	if len(p.Redaction.Fields) > 0 {
		rc.Fields = map[string]map[string]redact.Action{}
		for f, acts := range p.Redaction.Fields {
			rc.Fields[f] = map[string]redact.Action{}
			for k, a := range acts {
				rc.Fields[f][k] = redact.Action(a)
			}
		}
	}
	cc := redact.CaptureConfig{Redaction: rc, Tenants: map[string]redact.Profile{}}
	if cc.Profile, err = redact.ParseProfile(p.Profile); err != nil {
		return nil, fmt.Errorf("config privacy.profile: %w", err)
	}
	for t, tp := range p.Tenants {
		if cc.Tenants[t], err = redact.ParseProfile(tp.Profile); err != nil {
			return nil, fmt.Errorf("config privacy.tenants.%s.profile: %w", t, err)
		}
	}
	c, err := redact.NewCapture(cc)
	if err != nil {
		return nil, fmt.Errorf("config privacy.redaction: %w", err)
	}
	return c, nil
}

type retentionConfig struct {
	Tenant  string   `yaml:"tenant"`
	Kind    string   `yaml:"kind"`
	Content duration `yaml:"content"`
}

// duration is a time.Duration that YAML may also give in days ("180d").
type duration time.Duration

func (d *duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

// parseDuration parses a Go duration, or a whole number of days ("180d"),
// or "forever" (0).
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "forever" {
		return 0, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 || days > 100*366 {
			return 0, fmt.Errorf("duration %q: want a number of days such as 180d", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want 180d, 4320h or forever", s)
	}
	return d, nil
}

func (p *privacyConfig) retentionRules() ([]ledger.RetentionRule, error) {
	rules := make([]ledger.RetentionRule, len(p.Retention))
	for i, r := range p.Retention {
		rules[i] = ledger.RetentionRule{Tenant: r.Tenant, Kind: infertrail.Kind(r.Kind), Content: time.Duration(r.Content)}
		if r.Tenant == "*" {
			rules[i].Tenant = ""
		}
		if r.Kind == "*" {
			rules[i].Kind = ""
		}
	}
	if err := ledger.CheckRetention(rules); err != nil {
		return nil, withHint(fmt.Errorf("config privacy.retention: %w", err), "each rule is {tenant, kind, content}, e.g. {kind: inference, content: 180d}")
	}
	return rules, nil
}

// runRetention runs the retention job every interval until ctx is done.
func runRetention(ctx context.Context, lg *ledger.Log, rules []ledger.RetentionRule, interval time.Duration, logger *slog.Logger) {
	if len(rules) == 0 {
		return
	}
	if interval <= 0 {
		interval = time.Hour
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		start := time.Now()
		out, err := lg.Expire(ctx, rules, start, func(p ledger.Expired) {
			logger.Info("retention: content erased", "erasure_records", p.Erasures, "keys", p.Keys, "blobs", p.Blobs)
		})
		if err != nil && ctx.Err() == nil {
			logger.Error("retention run failed", "err", err)
		} else if out.Erasures > 0 || out.Held > 0 {
			logger.Info("retention run done", "erasure_records", out.Erasures, "keys", out.Keys, "blobs", out.Blobs,
				"held", out.Held, "took", time.Since(start).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// target is where an administrative command acts: a data folder, opened
// directly, or a running server's API.
type target struct {
	data, store, server, config, token *string
}

func addTarget(fs *flag.FlagSet) target {
	return target{
		data:   fs.String("data", "", "act on the data `folder` directly (the server may be running)"),
		store:  fs.String("store", "", "with --data: the store `DSN`, if not SQLite in the data folder"),
		server: fs.String("server", "", "act through a running server's API at `URL`"),
		config: fs.String("config", "", "with --data: the server's YAML configuration `file` (for privacy.scope, retention and signing)"),
		token:  tokenFlag(fs),
	}
}

func (t target) check() error {
	switch {
	case *t.data != "" && *t.server != "":
		return withHint(errors.New("give --data or --server, not both"), "")
	case *t.data == "" && *t.server == "":
		return withHint(errors.New("give --data DIR or --server URL"), "--data acts on the data folder directly; --server goes through a running server's API")
	}
	return nil
}

// openLog opens the log of a data folder for an administrative command.
func (t target) openLog(ctx context.Context, stderr io.Writer) (*ledger.Log, config, func(), error) {
	cfg := defaultConfig()
	if *t.config != "" {
		if err := loadConfigFile(*t.config, &cfg); err != nil {
			return nil, cfg, nil, err
		}
	}
	dk, _, err := openDataFolder(*t.data, "", false, "")
	if err != nil {
		return nil, cfg, nil, err
	}
	if dk.kek == nil {
		return nil, cfg, nil, withHint(fmt.Errorf("no %s in %s", contentKeysFile, *t.data), "give the data folder of a server that has run")
	}
	st, _, err := openStore(ctx, *t.store, *t.data, false, sqlite.Config{MinFree: cfg.Storage.MinFreeBytes})
	if err != nil {
		return nil, cfg, nil, err
	}
	if err := checkKeyring(ctx, st, dk.kek, dk.kek.Path()); err != nil {
		st.Close()
		return nil, cfg, nil, err
	}
	signer, verifier, err := dk.signer(cfg.Signing)
	if err != nil {
		st.Close()
		return nil, cfg, nil, err
	}
	capture, err := cfg.Privacy.capture(dk.secret)
	if err != nil {
		st.Close()
		return nil, cfg, nil, err
	}
	lg, err := ledger.Open(ctx, ledger.Config{Store: st, Signer: signer, Verifier: verifier, Origin: dk.origin,
		Secret: dk.secret, KEK: dk.kek, ScopeFields: cfg.Privacy.Scope, Capture: capture.Apply, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		st.Close()
		return nil, cfg, nil, err
	}
	return lg, cfg, func() { lg.Close(); st.Close() }, nil
}

// cliActor is who runs a command on a data folder: the operating-system user.
func cliActor() infertrail.Actor {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return infertrail.Actor{ID: "cli:" + name + "@" + host, Type: "user"}
}

// call sends an administrative request to a server and decodes its answer.
func (t target) call(ctx context.Context, method, path string, body, out any) error {
	return t.callWith(ctx, clientWithToken(resolveToken(*t.token), 0), method, path, body, out)
}

// callWith is call over the given client.
func (t target) callWith(ctx context.Context, client *http.Client, method, path string, body, out any) error {
	base, err := url.Parse(strings.TrimSuffix(*t.server, "/") + "/")
	if err != nil || base.Scheme != "http" && base.Scheme != "https" {
		return fmt.Errorf("server URL %q: want http:// or https://", *t.server)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	p, q, _ := strings.Cut(path, "?")
	u := base.JoinPath(p)
	u.RawQuery = q
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			if e.Error.Code == "storage_full" {
				return fmt.Errorf("server answered %d: %s: %w", resp.StatusCode, e.Error.Message, infertrail.ErrStorageFull)
			}
			return fmt.Errorf("server answered %d: %s", resp.StatusCode, e.Error.Message)
		}
		return fmt.Errorf("server answered %s", resp.Status)
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}

// eraseHint explains an erasure refused for want of space: it rewrites
// every page that holds the scope's content before it frees any, and
// content spread over the whole file needs room for much of it.
func eraseHint(err error) error {
	if errors.Is(err, infertrail.ErrStorageFull) {
		return withHint(err, "the erasure needs more free space than the disk has left (storage.min_free_bytes): grow the volume or free space on it, or erase smaller scopes (a session at a time); nothing was erased")
	}
	return err
}

func eraseCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("erase", stderr)
	scope := fs.String("scope", "", "what to erase: tenant=T[,session=S…] (tenant=T alone erases the tenant's content)")
	reason := fs.String("reason", "", "why (required), e.g. \"GDPR Art. 17 request 113\"")
	authority := fs.String("authority", "", "who authorised it, if not you alone (a ticket, a DPO decision)")
	t := addTarget(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *scope == "" || *reason == "" {
		return withHint(errors.New("erase: --scope and --reason are required"), `infertrail erase --scope tenant=acme,session=sess-42 --reason "GDPR Art. 17 request" --data DIR`)
	}
	if err := t.check(); err != nil {
		return err
	}
	var out struct {
		Seq   int64 `json:"seq"`
		Keys  int   `json:"keys"`
		Blobs int64 `json:"blobs"`
	}
	if *t.server != "" {
		if err := t.call(ctx, "POST", "v1/erasures", map[string]string{"scope": *scope, "reason": *reason, "authority": *authority}, &out); err != nil {
			return eraseHint(err)
		}
	} else {
		lg, _, closeLog, err := t.openLog(ctx, stderr)
		if err != nil {
			return err
		}
		defer closeLog()
		res, err := lg.Erase(ctx, ledger.Erasure{Scope: infertrail.Scope(*scope), Reason: *reason, Authority: *authority, Actor: cliActor()})
		if err != nil {
			if errors.Is(err, infertrail.ErrHeld) {
				return withHint(err, "'infertrail hold list' shows the holds; 'infertrail hold release ID --tenant T' releases one")
			}
			return eraseHint(err)
		}
		out.Seq, out.Keys, out.Blobs = res.Seq, res.Keys, res.Blobs
	}
	if out.Keys == 0 {
		fmt.Fprintf(stdout, "No stored content matched %s: nothing was erased.\n", *scope)
		fmt.Fprintf(stdout, "Erasure record: %d (the request is recorded all the same).\n", out.Seq)
		return nil
	}
	fmt.Fprintf(stdout, "Erased the content of %s: %d data keys destroyed, %d stored blobs deleted.\n", *scope, out.Keys, out.Blobs)
	fmt.Fprintf(stdout, "Erasure record: %d. The log still verifies; the erased records' content reads as \"erased by record %d\".\n", out.Seq, out.Seq)
	return nil
}

func holdCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return withHint(errors.New("hold: want a subcommand"), "infertrail hold add|list|release")
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("hold "+sub, stderr)
	t := addTarget(fs)
	switch sub {
	case "add":
		scope := fs.String("scope", "", "what to hold: tenant=T[,session=S…]")
		reason := fs.String("reason", "", "why (required): the case, the order")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if *scope == "" || *reason == "" {
			return withHint(errors.New("hold add: --scope and --reason are required"), `infertrail hold add --scope tenant=acme --reason "litigation 2026-17" --data DIR`)
		}
		if err := t.check(); err != nil {
			return err
		}
		var id string
		if *t.server != "" {
			var h struct{ ID string }
			if err := t.call(ctx, "POST", "v1/holds", map[string]string{"scope": *scope, "reason": *reason}, &h); err != nil {
				return err
			}
			id = h.ID
		} else {
			lg, _, closeLog, err := t.openLog(ctx, stderr)
			if err != nil {
				return err
			}
			defer closeLog()
			h, err := lg.PlaceHold(ctx, infertrail.Scope(*scope), *reason, cliActor())
			if err != nil {
				return err
			}
			id = h.ID.String()
		}
		fmt.Fprintf(stdout, "Hold %s placed on %s: its content cannot be erased, by request or retention, until it is released.\n", id, *scope)
		return nil
	case "list":
		tenant := fs.String("tenant", "", "only this tenant's holds")
		all := fs.Bool("all", false, "released holds too")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if err := t.check(); err != nil {
			return err
		}
		type row struct{ ID, Tenant, Scope, Reason, CreatedBy, Created, Released string }
		var rows []row
		if *t.server != "" {
			var out struct {
				Holds []struct {
					ID, Tenant, Scope, Reason, Created, Released string
					CreatedBy                                    string `json:"created_by"`
				} `json:"holds"`
			}
			q := url.Values{}
			if *tenant != "" {
				q.Set("tenant", *tenant)
			}
			if *all {
				q.Set("all", "true")
			}
			if err := t.call(ctx, "GET", "v1/holds?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			for _, h := range out.Holds {
				rows = append(rows, row{h.ID, h.Tenant, h.Scope, h.Reason, h.CreatedBy, h.Created, h.Released})
			}
		} else {
			lg, _, closeLog, err := t.openLog(ctx, stderr)
			if err != nil {
				return err
			}
			defer closeLog()
			hs, err := lg.Holds(ctx, *tenant, !*all)
			if err != nil {
				return err
			}
			for _, h := range hs {
				r := row{h.ID.String(), h.Tenant, string(h.Scope), h.Reason, h.CreatedBy, time.Unix(0, h.Created).UTC().Format(time.RFC3339), ""}
				if !h.Active() {
					r.Released = time.Unix(0, h.Released).UTC().Format(time.RFC3339)
				}
				rows = append(rows, r)
			}
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTENANT\tSCOPE\tREASON\tBY\tPLACED\tRELEASED")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Tenant, r.Scope, r.Reason, r.CreatedBy, r.Created, r.Released)
		}
		return tw.Flush()
	case "release":
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return withHint(errors.New("hold release: want the hold's id"), "infertrail hold release ID --tenant T [--reason TEXT]")
		}
		idText := args[0]
		tenant := fs.String("tenant", "", "the hold's tenant (required)")
		reason := fs.String("reason", "", "why it is released")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if *tenant == "" {
			return withHint(errors.New("hold release: --tenant is required"), "'infertrail hold list' shows each hold's tenant")
		}
		if err := t.check(); err != nil {
			return err
		}
		id, err := infertrail.ParseUUID(idText)
		if err != nil {
			return fmt.Errorf("hold id %q: %w", idText, err)
		}
		if *t.server != "" {
			if err := t.call(ctx, "POST", "v1/holds/"+id.String()+"/release", map[string]string{"tenant": *tenant, "reason": *reason}, nil); err != nil {
				return err
			}
		} else {
			lg, _, closeLog, err := t.openLog(ctx, stderr)
			if err != nil {
				return err
			}
			defer closeLog()
			if err := lg.ReleaseHold(ctx, *tenant, id, *reason, cliActor()); err != nil {
				return err
			}
		}
		fmt.Fprintf(stdout, "Hold %s released.\n", id)
		return nil
	}
	return withHint(fmt.Errorf("hold: unknown subcommand %q", sub), "infertrail hold add|list|release")
}

func retentionCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "run" {
		return withHint(errors.New("retention: want a subcommand"), "infertrail retention run --data DIR --config FILE")
	}
	fs := newFlagSet("retention run", stderr)
	t := addTarget(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *t.server != "" {
		return withHint(errors.New("retention run works on a data folder"), "a running server runs retention itself every privacy.retention_interval")
	}
	if err := t.check(); err != nil {
		return err
	}
	lg, cfg, closeLog, err := t.openLog(ctx, stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	rules, err := cfg.Privacy.retentionRules()
	if err != nil {
		return err
	}
	if len(rules) == 0 {
		return withHint(errors.New("no retention rules"), "give the server's --config FILE with a privacy.retention section")
	}
	out, err := lg.Expire(ctx, rules, time.Now(), func(p ledger.Expired) {
		fmt.Fprintf(stderr, "infertrail: %d erasure records, %d data keys, %d blobs so far\n", p.Erasures, p.Keys, p.Blobs)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Retention: %d erasure records appended, %d data keys destroyed, %d blobs deleted, %d expired keys kept under legal hold.\n",
		out.Erasures, out.Keys, out.Blobs, out.Held)
	return nil
}

func kekCmd(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keys "+sub, stderr)
	data := fs.String("data", defaultData, "data `folder`")
	store := fs.String("store", "", "the store `DSN`, if not SQLite in the data folder")
	var id string
	if sub == "remove-kek" {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return withHint(errors.New("keys remove-kek: want the KEK's id"), "'infertrail keys list-kek' lists them")
		}
		id, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dk, _, err := openDataFolder(*data, "", false, "")
	if err != nil {
		return err
	}
	if dk.kek == nil {
		return fmt.Errorf("no %s in %s", contentKeysFile, *data)
	}
	switch sub {
	case "list-kek":
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEK\tCREATED\tCURRENT")
		for _, k := range dk.kek.List() {
			fmt.Fprintf(tw, "%s\t%s\t%v\n", k.ID, k.Created.UTC().Format(time.RFC3339), k.Current)
		}
		return tw.Flush()
	}
	st, _, err := openStore(ctx, *store, *data, false, sqlite.Config{})
	if err != nil {
		return err
	}
	defer st.Close()
	switch sub {
	case "rewrap":
		rw, err := ledger.RewrapKeys(ctx, st, dk.kek, nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d data keys re-wrapped with KEK %s.\n", rw.Keys, dk.kek.Current())
		return nil
	case "rotate-kek":
		newID, err := dk.kek.Rotate()
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "infertrail: new KEK %s is current; re-wrapping data keys\n", newID)
		// Running servers follow the key file within a second; keys they
		// wrap meanwhile with the old KEK are caught by a second pass.
		var total ledger.Rewrapped
		for pass := range 2 {
			if pass == 1 {
				time.Sleep(2 * time.Second)
			}
			rw, err := ledger.RewrapKeys(ctx, st, dk.kek, func(p ledger.Rewrapped) {
				fmt.Fprintf(stderr, "infertrail: %d data keys re-wrapped\n", total.Keys+p.Keys)
			})
			if err != nil {
				return withHint(fmt.Errorf("rotate KEK: %w", err), "KEK "+newID+" is current; once the cause is fixed, 'infertrail keys rewrap' finishes the re-wrap")
			}
			total.Keys += rw.Keys
			total.Skipped += rw.Skipped
		}
		fmt.Fprintf(stdout, "KEK %s is current; %d data keys re-wrapped with it.\n", newID, total.Keys)
		fmt.Fprintf(stdout, "Copy %s to every node that shares this store, then remove old KEKs with 'infertrail keys remove-kek ID'.\n", dk.kek.Path())
		return nil
	case "remove-kek":
		n, err := ledger.LiveKeysWrappedBy(ctx, st, id)
		if err != nil {
			return err
		}
		if n > 0 {
			return withHint(fmt.Errorf("KEK %s still wraps %d live data keys", id, n), "run 'infertrail keys rewrap' (after 'rotate-kek', if it is still current) and try again")
		}
		if err := dk.kek.Remove(id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "KEK %s removed from %s. Data keys in backups made before the rotation can no longer be unwrapped.\n", id, dk.kek.Path())
		return nil
	}
	return nil
}

// checkKeyring refuses a keyring that cannot unwrap the data keys already in
// the store: a node started with a keyring of its own, next to nodes that
// share the store with another, would write content the others cannot
// read. It looks at up to 10,000 live keys.
func checkKeyring(ctx context.Context, st infertrail.KeyStore, ring *keys.Keyring, path string) error {
	held := map[string]bool{}
	for _, k := range ring.List() {
		held[k.ID] = true
	}
	unknown := map[string]int{}
	seen := 0
	errEnough := errors.New("enough")
	err := st.ScanKeys(ctx, infertrail.KeyFilter{Live: true}, infertrail.KeyID{}, func(k *infertrail.DataKey) error {
		if !held[k.KEK] {
			unknown[k.KEK]++
		}
		if seen++; seen == 10000 {
			return errEnough
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return fmt.Errorf("check keyring: %w", err)
	}
	if len(unknown) > 0 {
		ids := slices.Sorted(maps.Keys(unknown))
		return withHint(fmt.Errorf("the keyring %s does not hold KEK %s, which wraps data keys in this store", path, strings.Join(ids, ", ")),
			"every node that shares a store needs the same content-keys file: copy it from a node that has run (and never start a node with a fresh one)")
	}
	return nil
}
