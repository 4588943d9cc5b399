package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"filippo.io/torchwood"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/capture/gateway"
	"github.com/infertrail/infertrail/capture/mcp"
	"github.com/infertrail/infertrail/capture/opa"
	"github.com/infertrail/infertrail/capture/otlp"
	"github.com/infertrail/infertrail/httpapi"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/ledger/sshagent"
	"github.com/infertrail/infertrail/policy"
	"github.com/infertrail/infertrail/policy/obligation"
	"github.com/infertrail/infertrail/redact"
	"github.com/infertrail/infertrail/store/postgres"
	"github.com/infertrail/infertrail/store/sqlite"
	"github.com/infertrail/infertrail/web"
)

// config is the server configuration: defaults, then the YAML file, then
// INFERTRAIL_* environment variables, then flags.
type config struct {
	Data                 string `yaml:"data"`
	Listen               string `yaml:"listen"`
	Store                string `yaml:"store"` // empty: SQLite in the data folder; or postgres://…
	Origin               string `yaml:"origin"`
	LogLevel             string `yaml:"log_level"`
	AllowUnauthenticated bool   `yaml:"allow_unauthenticated_remote"`
	Ingest               struct {
		MaxBodyBytes int64 `yaml:"max_body_bytes"`
		MaxBatch     int   `yaml:"max_batch"`
	} `yaml:"ingest"`
	Auth    authConfig    `yaml:"auth"`
	Gateway gatewayConfig `yaml:"gateway"`
	MCP     mcpConfig     `yaml:"mcp"`
	OTLP    struct {
		// GRPCListen, if set, serves OTLP/gRPC on this address (such as
		// 127.0.0.1:4317); OTLP/HTTP is always on the main listener.
		GRPCListen     string `yaml:"grpc_listen"`
		MaxBodyBytes   int64  `yaml:"max_body_bytes"`
		KeepIrrelevant bool   `yaml:"keep_irrelevant"`
	} `yaml:"otlp"`
	Policy struct {
		// Dir, if set, is a folder of Rego policies the gateways enforce
		// (docs/policy.md); it is reloaded when it changes.
		Dir string `yaml:"dir"`
		// ApprovalTimeout is how long a call held for approval waits for
		// a decision (default 5m, at most 1h; docs/policy.md).
		ApprovalTimeout duration `yaml:"approval_timeout"`
		// HoldStreams holds a streamed model response back, whole, until
		// the inference.response policy has decided on it (docs/policy.md).
		HoldStreams bool `yaml:"hold_streams"`
	} `yaml:"policy"`
	Privacy privacyConfig `yaml:"privacy"`
	// Investigate configures the investigation index and the detectors.
	Investigate investigateConfig `yaml:"investigate"`
	// SIEM streams records and findings to SIEMs (docs/siem.md).
	SIEM siemConfig `yaml:"siem"`
	// GCPercent is Go's garbage collection target (GOGC) for the server:
	// the heap may grow by this percentage of the live heap before the
	// collector runs (default 400; the GOGC environment variable wins).
	GCPercent int `yaml:"gc_percent"`
	Storage   struct {
		// MinFreeBytes is the free space that records leave on the disk
		// of the data folder's SQLite files (default 64 MiB; -1: none).
		MinFreeBytes int64 `yaml:"min_free_bytes"`
	} `yaml:"storage"`
	// Signing, when PublicKey is set, signs checkpoints with an SSH
	// agent's key instead of log.key (docs/keys.md).
	Signing signingConfig `yaml:"signing"`
	// Witnesses cosign each new checkpoint (docs/signing.md#witnesses).
	Witnesses []witnessConfig `yaml:"witnesses"`
	Sequencer struct {
		MaxBatch           int           `yaml:"max_batch"`
		MaxWait            time.Duration `yaml:"max_wait"`
		QueueLimit         int           `yaml:"queue_limit"`
		CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	} `yaml:"sequencer"`
}

// signingConfig names the SSH agent that holds the checkpoint key.
type signingConfig struct {
	// PublicKey is the key's public half, as its .pub file or
	// ssh-add -L gives it ("ssh-ed25519 AAAA… comment").
	PublicKey string `yaml:"public_key"`
	// SSHAgent is the agent's socket; empty: $SSH_AUTH_SOCK.
	SSHAgent string `yaml:"ssh_agent"`
	// Timeout bounds one signature (default 10s).
	Timeout time.Duration `yaml:"timeout"`
}

// witnessConfig is a C2SP tlog-witness that cosigns checkpoints.
type witnessConfig struct {
	URL string `yaml:"url"` // its base URL; checkpoints go to URL/add-checkpoint
	// Key is its cosignature verifier key (name+hash+key, a
	// tlog-cosignature key), as the witness publishes it.
	Key     string        `yaml:"key"`
	Timeout time.Duration `yaml:"timeout"` // bound on one request (default 10s)
}

// ledgerWitnesses checks the configured witnesses.
func ledgerWitnesses(cs []witnessConfig) ([]ledger.Witness, error) {
	var out []ledger.Witness
	for i, c := range cs {
		if u, err := url.Parse(c.URL); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return nil, withHint(fmt.Errorf("config witnesses[%d].url %q: want an http:// or https:// URL", i, c.URL), "the witness's base URL; checkpoints go to URL/add-checkpoint")
		}
		v, err := torchwood.NewCosignatureVerifier(strings.TrimSpace(c.Key))
		if err != nil {
			return nil, withHint(fmt.Errorf("config witnesses[%d].key %q: %w", i, c.Key, err), "give the witness's cosignature verifier key, name+hash+key, as the witness publishes it")
		}
		out = append(out, ledger.Witness{URL: c.URL, Verifier: v, Timeout: c.Timeout})
	}
	return out, nil
}

func defaultConfig() config {
	return config{Data: defaultData, Listen: "127.0.0.1:8470", LogLevel: "info", GCPercent: defaultGCPercent}
}

// defaultGCPercent lets the heap grow to five times what is live before a
// collection, where Go's default is twice. A server's live heap is small
// (tens of MB), and each collection slows the calls in flight: at 400, a
// policy decision's 99th percentile falls from about 0.9 ms to 0.3 ms
// (BENCHMARKS.md). GOMEMLIMIT still caps the heap where memory is tight.
const defaultGCPercent = 400

// setGCPercent applies the configured collection target, unless the
// operator set GOGC.
func setGCPercent(p int, log *slog.Logger) error {
	if p < 10 || p > 10000 {
		return fmt.Errorf("gc_percent %d: must be between 10 and 10000 (Go's default is 100, InferTrail's %d)", p, defaultGCPercent)
	}
	if v := os.Getenv("GOGC"); v != "" {
		log.Debug("GOGC is set; gc_percent is not applied", "GOGC", v)
		return nil
	}
	debug.SetGCPercent(p)
	return nil
}

func loadConfigFile(path string, c *config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

func applyEnv(c *config) {
	for _, e := range []struct {
		name string
		dst  *string
	}{
		{"INFERTRAIL_DATA", &c.Data}, {"INFERTRAIL_LISTEN", &c.Listen}, {"INFERTRAIL_STORE", &c.Store},
		{"INFERTRAIL_ORIGIN", &c.Origin}, {"INFERTRAIL_LOG_LEVEL", &c.LogLevel},
		{"INFERTRAIL_OPENAI_UPSTREAM", &c.Gateway.OpenAI.URL}, {"INFERTRAIL_ANTHROPIC_UPSTREAM", &c.Gateway.Anthropic.URL},
		{"INFERTRAIL_GATEWAY_DURABILITY", &c.Gateway.Durability}, {"INFERTRAIL_GATEWAY_LISTEN", &c.Gateway.Listen},
		{"INFERTRAIL_OTLP_GRPC_LISTEN", &c.OTLP.GRPCListen}, {"INFERTRAIL_POLICY_DIR", &c.Policy.Dir},
	} {
		if v, ok := os.LookupEnv(e.name); ok {
			*e.dst = v
		}
	}
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, withHint(fmt.Errorf("log level %q: %w", level, err), "use debug, info, warn or error")
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// openStore opens the configured store: SQLite in the data folder by
// default, or PostgreSQL for a postgres:// DSN. With lite.ReadOnly either
// store is opened read-only (postgres.Config.ReadOnly).
func openStore(ctx context.Context, dsn, dataDir string, create bool, lite sqlite.Config) (infertrail.Store, string, error) {
	switch {
	case dsn == "" || strings.HasPrefix(dsn, "sqlite:"):
		path := sqlitePath(dsn, dataDir)
		if !create {
			if _, err := os.Stat(path); err != nil {
				return nil, "", withHint(fmt.Errorf("no InferTrail database: %w", err), "give the data folder of a server that has run")
			}
		}
		db, err := sqlite.Open(ctx, path, lite)
		if err != nil {
			return nil, "", err
		}
		return db, "sqlite " + db.Path(), nil
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		db, err := postgres.Open(ctx, dsn, postgres.Config{ReadOnly: lite.ReadOnly})
		if errors.Is(err, postgres.ErrSchemaNewer) {
			return nil, "", withHint(err, "a newer infertrail migrated this schema: run that version (or a later one) on every node")
		}
		if err != nil {
			return nil, "", withHint(err, "check that PostgreSQL is running and the DSN is right; run 'infertrail migrate --store DSN' if migrations are run separately")
		}
		return db, "postgres", nil
	}
	return nil, "", withHint(fmt.Errorf("store %q: unknown kind", redactDSN(dsn)), "leave --store out for SQLite in the data folder, or give postgres://user@host/db")
}

// sqlitePath returns the SQLite file of a store DSN (empty, or
// sqlite:PATH) and data folder.
func sqlitePath(dsn, dataDir string) string {
	if dsn == "" {
		return filepath.Join(dataDir, dbFile)
	}
	return strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "//")
}

// redactDSN hides a password in a DSN before it is printed.
func redactDSN(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		if at := strings.Index(dsn[i+3:], "@"); at >= 0 {
			userinfo := dsn[i+3 : i+3+at]
			if c := strings.Index(userinfo, ":"); c >= 0 {
				return dsn[:i+3] + userinfo[:c] + ":xxxxx" + dsn[i+3+at:]
			}
		}
	}
	return dsn
}

func pprofMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	return m
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	configPath := fs.String("config", "", "YAML configuration `file`")
	data := fs.String("data", "", "data `folder` for keys and the embedded database (default ./"+defaultData+")")
	listen := fs.String("listen", "", "`address` to listen on (default 127.0.0.1:8470)")
	store := fs.String("store", "", "store `DSN`: empty for SQLite in the data folder, or postgres://…")
	origin := fs.String("origin", "", "checkpoint origin line, fixed when the key is first created")
	logLevel := fs.String("log-level", "", "debug, info, warn or error")
	debugListen := fs.String("debug-listen", "", "serve Go's /debug/pprof profiles on this loopback `address`")
	openaiUp := fs.String("openai-upstream", "", "OpenAI-compatible API base `URL` for the gateway (default "+defaultOpenAIUpstream+")")
	anthropicUp := fs.String("anthropic-upstream", "", "Anthropic API base `URL` for the gateway (default "+defaultAnthropicUpstream+")")
	durability := fs.String("gateway-durability", "", "when gateway records are durable: request-ahead (default), fail-closed or async")
	gatewayListen := fs.String("gateway-listen", "", "serve the LLM and MCP gateways on this `address` instead of the main one")
	var mcpServers mcpFlag
	fs.Var(&mcpServers, "mcp", "relay an MCP server at /mcp/NAME: `NAME=URL` of its Streamable HTTP endpoint (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg := defaultConfig()
	if *configPath != "" {
		if err := loadConfigFile(*configPath, &cfg); err != nil {
			return err
		}
	}
	applyEnv(&cfg)
	for _, f := range []struct{ v, dst *string }{{data, &cfg.Data}, {listen, &cfg.Listen}, {store, &cfg.Store}, {origin, &cfg.Origin}, {logLevel, &cfg.LogLevel},
		{openaiUp, &cfg.Gateway.OpenAI.URL}, {anthropicUp, &cfg.Gateway.Anthropic.URL}, {durability, &cfg.Gateway.Durability},
		{gatewayListen, &cfg.Gateway.Listen}} {
		if *f.v != "" {
			*f.dst = *f.v
		}
	}
	cfg.MCP.Servers = append(cfg.MCP.Servers, mcpServers...)
	logger, err := newLogger(cfg.LogLevel, stderr)
	if err != nil {
		return err
	}
	if err := setGCPercent(cfg.GCPercent, logger); err != nil {
		return err
	}
	for _, addr := range []string{cfg.Listen, cfg.Gateway.Listen, cfg.OTLP.GRPCListen} {
		if cfg.Auth.Disabled && addr != "" && !isLoopback(addr) && !cfg.AllowUnauthenticated {
			return withHint(fmt.Errorf("refusing to listen on %s without authentication (auth.disabled is set): this address is reachable from other machines", addr),
				"remove auth.disabled, listen on 127.0.0.1, or set allow_unauthenticated_remote: true if a proxy in front authenticates every request")
		}
	}
	gwDurability := gateway.RequestAhead
	if cfg.Gateway.Durability != "" {
		if gwDurability, err = gateway.ParseDurability(cfg.Gateway.Durability); err != nil {
			return err
		}
	}
	retention, err := cfg.Privacy.retentionRules()
	if err != nil {
		return err
	}
	upstreams, err := cfg.Gateway.upstreams()
	if err != nil {
		return err
	}
	vkeys, err := cfg.Gateway.virtualKeys()
	if err != nil {
		return err
	}
	mcpUpstreams, err := cfg.MCP.servers()
	if err != nil {
		return err
	}
	mcpDurability, err := mcp.ParseDurability(cfg.MCP.Durability)
	if err != nil {
		return err
	}

	dk, created, err := openDataFolder(cfg.Data, cfg.Origin, true, cfg.Signing.PublicKey)
	if err != nil {
		return err
	}
	st, desc, err := openStore(ctx, cfg.Store, cfg.Data, true, sqlite.Config{MinFree: cfg.Storage.MinFreeBytes})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := checkKeyring(ctx, st, dk.kek, dk.kek.Path()); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if db, ok := st.(*sqlite.DB); ok {
		reg.MustRegister(storageCollectors(db)...)
		if err := db.Room(); err != nil {
			logger.Warn("starting on a full disk: records are refused until space is freed", "err", err)
		}
	}
	signer, verifier, err := dk.signer(cfg.Signing)
	if err != nil {
		return err
	}
	capture, err := cfg.Privacy.capture(dk.secret)
	if err != nil {
		return err
	}
	witnesses, err := ledgerWitnesses(cfg.Witnesses)
	if err != nil {
		return err
	}
	lg, err := ledger.Open(ctx, ledger.Config{
		Store: st, Signer: signer, Verifier: verifier, Origin: dk.origin, Secret: dk.secret, Witnesses: witnesses,
		KEK: dk.kek, ScopeFields: cfg.Privacy.Scope, Capture: capture.Apply,
		MaxBatch: cfg.Sequencer.MaxBatch, MaxWait: cfg.Sequencer.MaxWait, QueueLimit: cfg.Sequencer.QueueLimit,
		CheckpointInterval: cfg.Sequencer.CheckpointInterval,
		Logger:             logger, Metrics: ledger.NewMetrics(reg),
	})
	if err != nil {
		return err
	}
	fingerprinter, err := redact.NewFingerprinter(dk.secret)
	if err != nil {
		lg.Close()
		return err
	}
	var (
		auth          infertrail.Authenticator
		signIn        *web.OIDCSignIn
		tokens        *access.Tokens
		adminToken    string
		adminTokenNew bool
	)
	if !cfg.Auth.Disabled {
		a, s, err := cfg.Auth.authenticator(ctx, st, fingerprinter.Of)
		if err != nil {
			lg.Close()
			return err
		}
		auth, signIn, tokens = a, s, &access.Tokens{Store: st, Recorder: lg}
		absData, _ := filepath.Abs(cfg.Data)
		if adminToken, adminTokenNew, err = bootstrapAdminToken(ctx, tokens, st, absData); err != nil {
			lg.Close()
			return err
		}
	}
	investigator, err := newEngine(lg, dk.secret, cfg.Investigate, logger)
	if err != nil {
		lg.Close()
		return err
	}
	reg.MustRegister(investigator.Collector())
	approvalSvc, err := newApprovals(st, lg, time.Duration(cfg.Policy.ApprovalTimeout), logger)
	if err != nil {
		lg.Close()
		return err
	}
	api, err := httpapi.New(httpapi.Config{
		Log: lg, VerifierKey: dk.vkey, MaxBodyBytes: cfg.Ingest.MaxBodyBytes, MaxBatch: cfg.Ingest.MaxBatch,
		Auth: auth, Tokens: tokens, RequireReason: cfg.Auth.RequireReason, Fingerprinter: fingerprinter,
		Investigate: investigator, Approvals: approvalSvc, Logger: logger, Gatherer: reg, Registry: reg,
	})
	if err != nil {
		lg.Close()
		return err
	}
	ui, err := web.New(web.Config{API: api, Auth: auth, Log: lg, Logger: logger, OIDC: signIn})
	if err != nil {
		lg.Close()
		if signIn != nil {
			return withHint(fmt.Errorf("auth.oidc: %w", err), "check auth.oidc.redirect_url (https://<host>/ui/signin/oidc/callback) and auth.oidc.scopes")
		}
		return err
	}
	if signIn != nil {
		logger.Info("web ui: sign-in with OIDC", "issuer", cfg.Auth.OIDC.Issuer,
			"client_id", signIn.ClientID, "redirect_url", signIn.RedirectURL, "public_client", signIn.ClientSecret == "")
	}
	var engine infertrail.PolicyEngine
	policyCtx, stopPolicy := context.WithCancel(context.Background())
	defer stopPolicy()
	if cfg.Policy.Dir != "" {
		e, err := policy.New(ctx, policy.Config{Dir: cfg.Policy.Dir, Recorder: lg, Logger: logger, History: true})
		if err != nil {
			lg.Close()
			return withHint(fmt.Errorf("policy: %w", err), "fix the policy, or leave policy.dir out to run without one")
		}
		go e.Run(policyCtx)
		engine = e
	}
	rules, err := cfg.Privacy.rules()
	if err != nil {
		lg.Close()
		return err
	}
	redactors := obligation.NewRedactors(dk.secret, rules)
	gw, err := gateway.New(gateway.Config{
		Recorder: lg, Secret: dk.secret, Upstreams: upstreams, Durability: gwDurability,
		VirtualKeys: vkeys, RequireVirtualKey: cfg.Gateway.RequireVirtualKey, Auth: auth, Policy: engine, Approvals: approvalSvc,
		HoldStreams: cfg.Policy.HoldStreams, Redactors: redactors,
		MaxRequestBytes: cfg.Gateway.MaxRequestBytes, MaxCaptureBytes: cfg.Gateway.MaxCaptureBytes,
		Logger: logger, Registry: reg,
	})
	if err != nil {
		lg.Close()
		return err
	}
	mcpGw, err := mcp.New(mcp.Config{Recorder: lg, Secret: dk.secret, Servers: mcpUpstreams, Auth: auth, Policy: engine, Approvals: approvalSvc,
		Redactors:  redactors,
		Durability: mcpDurability, MaxMessageBytes: cfg.MCP.MaxMessageBytes, Logger: logger})
	if err != nil {
		lg.Close()
		return err
	}
	mapper, err := otlp.NewMapper(otlp.MapConfig{KeepIrrelevant: cfg.OTLP.KeepIrrelevant})
	if err != nil {
		lg.Close()
		return err
	}
	receiver, err := otlp.New(otlp.Config{Recorder: lg, Mapper: mapper, Auth: auth, MaxBodyBytes: cfg.OTLP.MaxBodyBytes,
		Logger: logger, Registry: reg})
	if err != nil {
		lg.Close()
		return err
	}
	decisionLogs, err := opa.New(opa.Config{Recorder: lg, Auth: auth, Logger: logger, Registry: reg})
	if err != nil {
		lg.Close()
		return err
	}
	gateways := http.NewServeMux()
	for _, p := range gw.Prefixes() {
		gateways.Handle(p, gw)
	}
	gateways.Handle("/mcp/", mcpGw)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		lg.Close()
		return withHint(fmt.Errorf("listen: %w", err), "another process may be using the port; choose one with --listen")
	}
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/", readDeadline(api, 2*time.Minute))
	mux.Handle("/ui/", readDeadline(ui, 2*time.Minute)) // the investigator UI; /ui redirects to /ui/
	for _, p := range otlp.Paths {
		mux.Handle(p, readDeadline(receiver, 2*time.Minute))
	}
	for _, p := range opa.Paths {
		mux.Handle(p, readDeadline(decisionLogs, 2*time.Minute))
	}
	servers := []*http.Server{newServer(mux)}
	listeners := []net.Listener{ln}
	if cfg.Gateway.Listen == "" {
		for _, p := range gw.Prefixes() {
			mux.Handle(p, gw)
		}
		mux.Handle("/mcp/", mcpGw)
	} else {
		gln, err := net.Listen("tcp", cfg.Gateway.Listen)
		if err != nil {
			ln.Close()
			lg.Close()
			return withHint(fmt.Errorf("gateway listen: %w", err), "another process may be using the port; choose one with --gateway-listen")
		}
		servers = append(servers, newServer(gateways))
		listeners = append(listeners, gln)
	}
	var (
		grpcServer *grpc.Server
		grpcAddr   string
	)
	if cfg.OTLP.GRPCListen != "" {
		gl, err := net.Listen("tcp", cfg.OTLP.GRPCListen)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			lg.Close()
			return withHint(fmt.Errorf("OTLP gRPC listen: %w", err), "another process may be using the port; choose one with otlp.grpc_listen")
		}
		maxMsg := int(cfg.OTLP.MaxBodyBytes)
		if maxMsg <= 0 {
			maxMsg = 16 << 20
		}
		grpcServer = grpc.NewServer(grpc.MaxRecvMsgSize(maxMsg), grpc.ConnectionTimeout(10*time.Second))
		receiver.Register(grpcServer)
		go func() {
			if err := grpcServer.Serve(gl); err != nil {
				logger.Error("OTLP gRPC listener", "err", err)
			}
		}()
		grpcAddr = gl.Addr().String()
	}
	absData, _ := filepath.Abs(cfg.Data)
	switch {
	case created && dk.skey == "":
		fmt.Fprintf(stdout, "Checkpoints are signed by the SSH agent's key %s; its verifier key is in %s.\n", signer.(*sshagent.Signer).Fingerprint(), filepath.Join(absData, logPubFile))
	case created:
		fmt.Fprintf(stdout, "Created a new signing key in %s (keep it secret; back it up).\n", filepath.Join(absData, logKeyFile))
	}
	fmt.Fprintf(stdout, "InferTrail is listening on http://%s\n", ln.Addr())
	fmt.Fprintf(stdout, "  data:         %s\n  store:        %s\n  origin:       %s\n  verifier key: %s\n", absData, desc, dk.origin, dk.vkey)
	switch {
	case cfg.Auth.Disabled:
		fmt.Fprintf(stdout, "  auth:         off (auth.disabled): every caller may do anything\n")
	case adminTokenNew:
		fmt.Fprintf(stdout, "Created the first admin token in %s (0600). Use it with:\n  export INFERTRAIL_TOKEN=$(cat %s)\n", adminToken, adminToken)
	default:
		fmt.Fprintf(stdout, "  auth:         API tokens (infertrail tokens list --data %s)\n", cfg.Data)
	}
	gwBase := "http://" + listeners[len(listeners)-1].Addr().String()
	for _, up := range upstreams {
		fmt.Fprintf(stdout, "  gateway:      %s%s → %s (%s)\n", gwBase, sdkBasePath[up.Provider.Name()], up.BaseURL, gwDurability)
	}
	for _, w := range witnesses {
		fmt.Fprintf(stdout, "  witness:      %s at %s\n", w.Verifier.Name(), w.URL)
	}
	fmt.Fprintf(stdout, "  otlp:         http://%s/v1/traces, /v1/logs\n", ln.Addr())
	if grpcAddr != "" {
		fmt.Fprintf(stdout, "  otlp grpc:    %s\n", grpcAddr)
	}
	for _, s := range mcpUpstreams {
		fmt.Fprintf(stdout, "  mcp:          %s/mcp/%s → %s\n", gwBase, s.Name, s.URL)
	}
	logger.Info("serving", "addr", ln.Addr().String(), "store", desc, "origin", dk.origin)

	if *debugListen != "" {
		if !isLoopback(*debugListen) {
			lg.Close()
			return fmt.Errorf("--debug-listen %s: profiles are served on loopback addresses only", *debugListen)
		}
		dbg := &http.Server{Addr: *debugListen, Handler: pprofMux(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := dbg.ListenAndServe(); err != nil {
				logger.Warn("debug listener", "err", err)
			}
		}()
		defer dbg.Close()
	}
	cfg.SIEM.Registry = reg
	stopSIEM, err := startSIEM(ctx, cfg.SIEM, lg, logger)
	if err != nil {
		lg.Close()
		return err
	}
	retCtx, stopRetention := context.WithCancel(context.Background())
	retDone := make(chan struct{}, 2)
	go func() {
		defer func() { retDone <- struct{}{} }()
		runRetention(retCtx, lg, retention, time.Duration(cfg.Privacy.RetentionInterval), logger)
	}()
	go func() {
		defer func() { retDone <- struct{}{} }()
		investigator.Run(retCtx)
	}()
	errc := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { errc <- srv.Serve(listeners[i]) }()
	}
	var serveErr error
	select {
	case err := <-errc:
		serveErr = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
		logger.Info("shutting down: finishing requests in flight")
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := approvalSvc.Close(shutCtx); err != nil {
		logger.Warn("shutdown", "err", err)
	}
	for _, srv := range servers {
		if err := srv.Shutdown(shutCtx); err != nil {
			logger.Warn("shutdown", "err", err)
		}
	}
	if err := gw.Close(shutCtx); err != nil {
		logger.Error("shutdown", "err", err)
	}
	if err := mcpGw.Close(shutCtx); err != nil {
		logger.Error("shutdown", "err", err)
	}
	if grpcServer != nil {
		stopped := make(chan struct{})
		go func() { grpcServer.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-shutCtx.Done():
			grpcServer.Stop()
		}
	}
	stopRetention()
	<-retDone
	<-retDone
	stopSIEM()
	stopPolicy()
	lg.Close()
	if serveErr != nil {
		return serveErr
	}
	logger.Info("stopped")
	return nil
}

// readDeadline bounds the time to read a request, body included, for
// handlers that read their whole body before answering. (The server has no
// ReadTimeout: it would cut off the gateway's long streamed responses.)
func readDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		h.ServeHTTP(w, r)
	})
}

// storageCollectors report the free space of the SQLite files' disk and
// the reserve that records leave on it: alert well before the first
// reaches the second, when records are refused (503, storage_full).
func storageCollectors(db *sqlite.DB) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "infertrail_storage_free_bytes",
			Help: "Free space on the disk of the SQLite database files, for an unprivileged writer (-1: unknown)."},
			func() float64 {
				free, ok := db.FreeBytes()
				if !ok {
					return -1
				}
				return float64(free)
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "infertrail_storage_reserve_bytes",
			Help: "Free space that records leave on that disk (storage.min_free_bytes; 0: none): below it, ingest and the gateways answer 503."},
			func() float64 { return float64(max(db.MinFree(), 0)) }),
	}
}
