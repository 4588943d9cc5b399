package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/infertrail/infertrail/capture/anthropic"
	"github.com/infertrail/infertrail/capture/gateway"
	"github.com/infertrail/infertrail/capture/openai"
)

// gatewayConfig is the LLM gateway's part of the configuration file.
type gatewayConfig struct {
	// Listen, if set, serves the gateway on its own address instead of the
	// main listener.
	Listen            string             `yaml:"listen"`
	Durability        string             `yaml:"durability"` // request-ahead (default), fail-closed, async
	RequireVirtualKey bool               `yaml:"require_virtual_key"`
	MaxRequestBytes   int64              `yaml:"max_request_bytes"`
	MaxCaptureBytes   int                `yaml:"max_capture_bytes"`
	OpenAI            upstreamConfig     `yaml:"openai"`
	Anthropic         upstreamConfig     `yaml:"anthropic"`
	VirtualKeys       []virtualKeyConfig `yaml:"virtual_keys"`
}

type upstreamConfig struct {
	Disabled              bool          `yaml:"disabled"`
	URL                   string        `yaml:"upstream"`
	ConnectTimeout        time.Duration `yaml:"connect_timeout"`
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	IdleTimeout           time.Duration `yaml:"idle_timeout"`
	Timeout               time.Duration `yaml:"timeout"`
	CAFile                string        `yaml:"ca_file"` // PEM roots to trust instead of the system's
	InsecureSkipVerify    bool          `yaml:"insecure_skip_verify"`
	// Profile is the capture profile of the route's records (minimal,
	// standard or forensic; default: the tenant's).
	Profile string `yaml:"profile"`
	// APIKey is a secret reference ("env:NAME", "file:PATH") to the
	// provider key sent for callers whose API key is an InferTrail token.
	APIKey string `yaml:"api_key"`
}

// virtualKeyConfig is one virtual key. Key and the upstream keys are
// secret references: "env:NAME" reads an environment variable, "file:PATH"
// a file; anything else is the key itself (keep such files 0600).
type virtualKeyConfig struct {
	Name     string            `yaml:"name"`
	Key      string            `yaml:"key"`
	Agent    string            `yaml:"agent"`
	Owner    string            `yaml:"owner"`
	Tenant   string            `yaml:"tenant"`
	Upstream map[string]string `yaml:"upstream"` // provider name → secret reference
}

// sdkBasePath is the path that each provider's SDKs take as their base
// URL on the gateway.
var sdkBasePath = map[string]string{"openai": "/openai/v1", "anthropic": "/anthropic"}

const (
	defaultOpenAIUpstream    = "https://api.openai.com/v1"
	defaultAnthropicUpstream = "https://api.anthropic.com"
)

// resolveSecret reads a secret reference.
func resolveSecret(ref, what string) (gateway.Secret, error) {
	switch {
	case strings.HasPrefix(ref, "env:"):
		v, ok := os.LookupEnv(ref[4:])
		if !ok || v == "" {
			return "", fmt.Errorf("%s: environment variable %s is not set", what, ref[4:])
		}
		return gateway.Secret(v), nil
	case strings.HasPrefix(ref, "file:"):
		b, err := os.ReadFile(ref[5:])
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("%s: %s is empty", what, ref[5:])
		}
		return gateway.Secret(v), nil
	case ref == "":
		return "", fmt.Errorf("%s: missing", what)
	}
	return gateway.Secret(ref), nil
}

// tlsConfig builds the TLS settings of an upstream: trusted roots from a
// PEM file instead of the system's, and (for tests only) no verification.
// Neither set gives nil: the system's defaults.
func tlsConfig(caFile string, insecure bool, what string) (*tls.Config, error) {
	if caFile == "" && !insecure {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s ca_file: %w", what, err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s ca_file %s: no PEM certificate in it", what, caFile)
		}
	}
	return tc, nil
}

// gatewayUpstreams builds the enabled upstreams.
func (c *gatewayConfig) upstreams() ([]gateway.Upstream, error) {
	var out []gateway.Upstream
	for _, u := range []struct {
		cfg *upstreamConfig
		p   gateway.Provider
		def string
	}{{&c.OpenAI, openai.Provider{}, defaultOpenAIUpstream}, {&c.Anthropic, anthropic.Provider{}, defaultAnthropicUpstream}} {
		if u.cfg.Disabled {
			continue
		}
		up := gateway.Upstream{
			Provider: u.p, BaseURL: u.cfg.URL,
			ConnectTimeout: u.cfg.ConnectTimeout, ResponseHeaderTimeout: u.cfg.ResponseHeaderTimeout,
			IdleTimeout: u.cfg.IdleTimeout, Timeout: u.cfg.Timeout, Profile: u.cfg.Profile,
		}
		if up.BaseURL == "" {
			up.BaseURL = u.def
		}
		if u.cfg.APIKey != "" {
			k, err := resolveSecret(u.cfg.APIKey, fmt.Sprintf("gateway %s api_key", u.p.Name()))
			if err != nil {
				return nil, err
			}
			up.Key = k
		}
		tc, err := tlsConfig(u.cfg.CAFile, u.cfg.InsecureSkipVerify, "gateway "+u.p.Name())
		if err != nil {
			return nil, err
		}
		up.TLS = tc
		out = append(out, up)
	}
	return out, nil
}

func (c *gatewayConfig) virtualKeys() ([]gateway.VirtualKey, error) {
	var out []gateway.VirtualKey
	for i, v := range c.VirtualKeys {
		what := fmt.Sprintf("gateway virtual key %d (%s)", i, v.Name)
		key, err := resolveSecret(v.Key, what+" key")
		if err != nil {
			return nil, err
		}
		vk := gateway.VirtualKey{Name: v.Name, Key: key, Agent: v.Agent, Owner: v.Owner, Tenant: v.Tenant,
			Upstream: map[string]gateway.Secret{}}
		for prov, ref := range v.Upstream {
			if prov != "openai" && prov != "anthropic" {
				return nil, fmt.Errorf("%s: upstream %q: want openai or anthropic", what, prov)
			}
			s, err := resolveSecret(ref, fmt.Sprintf("%s upstream %s key", what, prov))
			if err != nil {
				return nil, err
			}
			vk.Upstream[prov] = s
		}
		out = append(out, vk)
	}
	return out, nil
}
