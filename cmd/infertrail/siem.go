package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/export"
	"github.com/infertrail/infertrail/ledger"
)

// siemConfig is the siem part of the configuration file: streams that
// deliver the log's records and the detectors' findings to SIEMs, as OCSF
// events over HTTP or syslog (docs/siem.md).
//
//	siem:
//	  streams:
//	    - name: splunk
//	      type: http
//	      http:
//	        url: https://splunk.example:8088/services/collector/event
//	        format: hec
//	        auth_env: SPLUNK_HEC_AUTH   # "Splunk <token>"
//	    - name: soc
//	      type: syslog
//	      findings: true
//	      syslog: {address: siem.example:6514, tls: true}
type siemConfig struct {
	Streams []siemStream `yaml:"streams"`
	// Registry, if set, receives the streams' Prometheus metrics.
	Registry prometheus.Registerer `yaml:"-"`
}

// siemStream is one stream.
type siemStream struct {
	Name string `yaml:"name"` // required; its cursors are siem:<name> and siem:<name>:findings
	Type string `yaml:"type"` // http or syslog
	// Records (default true) and Findings (default false) say what the
	// stream delivers.
	Records  *bool `yaml:"records"`
	Findings bool  `yaml:"findings"`
	// Kinds and Tenants keep only these record kinds and tenants.
	Kinds   []string `yaml:"kinds"`
	Tenants []string `yaml:"tenants"`
	// Start is where a new stream begins: beginning (default: every
	// record in the log) or end (only records that come after).
	Start       string          `yaml:"start"`
	BatchSize   int             `yaml:"batch_size"`  // events per request or write (default 500)
	MaxWait     time.Duration   `yaml:"max_wait"`    // how long a record waits for a batch to fill (default 1s)
	MaxBackoff  time.Duration   `yaml:"max_backoff"` // the longest wait between retries (default 1m)
	IncludeLeaf bool            `yaml:"include_leaf"`
	HTTP        *siemHTTPConfig `yaml:"http"`
	Syslog      *siemSyslog     `yaml:"syslog"`
}

type siemHTTPConfig struct {
	URL    string `yaml:"url"`
	Format string `yaml:"format"` // ndjson (default), json or hec
	// The authentication header (default Authorization) and its whole
	// value, such as "Bearer …" or "Splunk …": from auth_env (an
	// environment variable's name) or auth_file (a file's path) rather
	// than written in the configuration file.
	AuthHeader string            `yaml:"auth_header"`
	Auth       string            `yaml:"auth"`
	AuthEnv    string            `yaml:"auth_env"`
	AuthFile   string            `yaml:"auth_file"`
	Headers    map[string]string `yaml:"headers"`
	Gzip       bool              `yaml:"gzip"`
	Timeout    time.Duration     `yaml:"timeout"` // per request (default 30s)
	CAFile     string            `yaml:"ca_file"` // PEM roots to trust instead of the system's
}

type siemSyslog struct {
	Address    string `yaml:"address"` // host:port
	TLS        bool   `yaml:"tls"`
	CAFile     string `yaml:"ca_file"`     // PEM roots to trust instead of the system's
	ServerName string `yaml:"server_name"` // the name in the receiver's certificate, if not the address's host
	CertFile   string `yaml:"cert_file"`   // a client certificate and key for mutual TLS
	KeyFile    string `yaml:"key_file"`
	Facility   int    `yaml:"facility"` // default 13 (log audit)
	AppName    string `yaml:"app_name"`
	Hostname   string `yaml:"hostname"`
	SDID       string `yaml:"sd_id"` // default infertrail@32473; use your own private enterprise number
	// Timeout bounds connecting and writing one batch (default 10s and 30s).
	Timeout time.Duration `yaml:"timeout"`
}

// validate checks the configuration without connecting anywhere; errors
// name the field.
func (c *siemConfig) validate() error {
	names := map[string]bool{}
	for i := range c.Streams {
		s := &c.Streams[i]
		at := fmt.Sprintf("siem.streams[%d]", i)
		if s.Name != "" {
			at = fmt.Sprintf("siem.streams[%d] (%s)", i, s.Name)
		}
		if s.Name == "" {
			return fmt.Errorf("%s.name: missing", at)
		}
		if names[s.Name] {
			return fmt.Errorf("%s.name: %q names two streams", at, s.Name)
		}
		names[s.Name] = true
		if s.Records != nil && !*s.Records && !s.Findings {
			return fmt.Errorf("%s: records: false and findings: false: the stream would deliver nothing", at)
		}
		for _, k := range s.Kinds {
			if !infertrail.Kind(k).Valid() {
				return fmt.Errorf("%s.kinds: %q is not a record kind", at, k)
			}
		}
		switch s.Start {
		case "", "beginning", "end":
		default:
			return fmt.Errorf("%s.start: %q: want beginning or end", at, s.Start)
		}
		if s.BatchSize < 0 || s.MaxWait < 0 || s.MaxBackoff < 0 {
			return fmt.Errorf("%s: batch_size, max_wait and max_backoff must not be negative", at)
		}
		switch s.Type {
		case "http":
			if s.HTTP == nil || s.HTTP.URL == "" {
				return fmt.Errorf("%s.http.url: missing", at)
			}
			if s.Syslog != nil {
				return fmt.Errorf("%s: type http takes an http section, not syslog", at)
			}
			n := 0
			for _, v := range []string{s.HTTP.Auth, s.HTTP.AuthEnv, s.HTTP.AuthFile} {
				if v != "" {
					n++
				}
			}
			if n > 1 {
				return fmt.Errorf("%s.http: give one of auth, auth_env and auth_file", at)
			}
		case "syslog":
			if s.Syslog == nil || s.Syslog.Address == "" {
				return fmt.Errorf("%s.syslog.address: missing", at)
			}
			if s.HTTP != nil {
				return fmt.Errorf("%s: type syslog takes a syslog section, not http", at)
			}
			if (s.Syslog.CertFile == "") != (s.Syslog.KeyFile == "") {
				return fmt.Errorf("%s.syslog: cert_file and key_file go together", at)
			}
			if !s.Syslog.TLS && (s.Syslog.CAFile != "" || s.Syslog.CertFile != "" || s.Syslog.ServerName != "") {
				return fmt.Errorf("%s.syslog: ca_file, cert_file and server_name need tls: true", at)
			}
		case "":
			return fmt.Errorf("%s.type: missing; want http or syslog", at)
		default:
			return fmt.Errorf("%s.type: %q: want http or syslog", at, s.Type)
		}
	}
	return nil
}

// sink builds the stream's sink, reading the files and variables it names.
func (s *siemStream) sink() (export.Sink, error) {
	at := "siem stream " + s.Name
	switch s.Type {
	case "http":
		h := s.HTTP
		auth := h.Auth
		switch {
		case h.AuthEnv != "":
			v, ok := os.LookupEnv(h.AuthEnv)
			if !ok || strings.TrimSpace(v) == "" {
				return nil, fmt.Errorf("%s: http.auth_env: $%s is not set", at, h.AuthEnv)
			}
			auth = strings.TrimSpace(v)
		case h.AuthFile != "":
			b, err := os.ReadFile(h.AuthFile)
			if err != nil {
				return nil, fmt.Errorf("%s: http.auth_file: %w", at, err)
			}
			auth = strings.TrimSpace(string(b))
		}
		cfg := export.HTTPConfig{URL: h.URL, Format: h.Format, AuthHeader: h.AuthHeader, Auth: export.Secret(auth),
			Gzip: h.Gzip, Timeout: h.Timeout}
		if len(h.Headers) > 0 {
			cfg.Headers = map[string]export.Secret{}
			for k, v := range h.Headers {
				cfg.Headers[k] = export.Secret(v)
			}
		}
		if h.CAFile != "" {
			pool, err := loadPool(h.CAFile)
			if err != nil {
				return nil, fmt.Errorf("%s: http.ca_file: %w", at, err)
			}
			cfg.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		sink, err := export.NewHTTPSink(cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		return sink, nil
	default:
		y := s.Syslog
		cfg := export.SyslogConfig{Address: y.Address, Facility: y.Facility, AppName: y.AppName, Hostname: y.Hostname,
			SDID: y.SDID, DialTimeout: y.Timeout / 3, WriteTimeout: y.Timeout}
		if y.TLS {
			tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: y.ServerName}
			if y.CAFile != "" {
				pool, err := loadPool(y.CAFile)
				if err != nil {
					return nil, fmt.Errorf("%s: syslog.ca_file: %w", at, err)
				}
				tc.RootCAs = pool
			}
			if y.CertFile != "" {
				cert, err := tls.LoadX509KeyPair(y.CertFile, y.KeyFile)
				if err != nil {
					return nil, fmt.Errorf("%s: syslog.cert_file: %w", at, err)
				}
				tc.Certificates = []tls.Certificate{cert}
			}
			cfg.TLS = tc
		}
		sink, err := export.NewSyslogSink(cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		return sink, nil
	}
}

func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("no PEM certificate in " + path)
	}
	return pool, nil
}

// startSIEM starts the configured streams over the log and returns a
// function that stops them, waits for them and closes their connections.
// A stream that cannot deliver keeps retrying and logging; it never skips
// a record, and never stops the server.
func startSIEM(ctx context.Context, cfg siemConfig, l *ledger.Log, logger *slog.Logger) (stop func(), err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if len(cfg.Streams) == 0 {
		return func() {}, nil
	}
	src, ok := l.Store().(export.StreamSource)
	if !ok {
		return nil, errors.New("siem: the store keeps no cursors")
	}
	if logger == nil {
		logger = slog.Default()
	}
	var metrics *export.SIEMMetrics
	if cfg.Registry != nil {
		metrics = export.NewSIEMMetrics(cfg.Registry)
	}
	var streams []*export.Stream
	var sinks []export.Sink
	closeSinks := func() {
		for _, s := range sinks {
			s.Close()
		}
	}
	for _, sc := range cfg.Streams {
		sink, err := sc.sink()
		if err != nil {
			closeSinks()
			return nil, err
		}
		sinks = append(sinks, sink)
		kinds := make([]infertrail.Kind, len(sc.Kinds))
		for i, k := range sc.Kinds {
			kinds[i] = infertrail.Kind(k)
		}
		st, err := export.NewStream(export.StreamConfig{
			Name: sc.Name, Source: src, Sink: sink,
			Records: sc.Records == nil || *sc.Records, Findings: sc.Findings,
			Kinds: kinds, Tenants: sc.Tenants, StartAtEnd: sc.Start == "end",
			BatchSize: sc.BatchSize, MaxWait: sc.MaxWait, MaxBackoff: sc.MaxBackoff,
			OCSF:   export.OCSFConfig{Origin: l.Origin(), Version: version, IncludeLeaf: sc.IncludeLeaf},
			Logger: logger, Metrics: metrics,
		})
		if err != nil {
			closeSinks()
			return nil, fmt.Errorf("siem stream %s: %w", sc.Name, err)
		}
		streams = append(streams, st)
		logger.Info("siem: stream configured", "stream", sc.Name, "type", sc.Type, "findings", sc.Findings)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, st := range streams {
		wg.Add(1)
		go func() { defer wg.Done(); st.Run(ctx) }()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			closeSinks()
		})
	}, nil
}
