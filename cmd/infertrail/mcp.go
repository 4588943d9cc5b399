package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/mcp"
	"github.com/infertrail/infertrail/client"
	"github.com/infertrail/infertrail/policy"
)

// mcpConfig is the MCP gateway's part of the configuration file.
type mcpConfig struct {
	Durability      string            `yaml:"durability"` // request-ahead (default) or async
	MaxMessageBytes int               `yaml:"max_message_bytes"`
	Servers         []mcpServerConfig `yaml:"servers"`
}

type mcpServerConfig struct {
	Name                  string        `yaml:"name"`
	URL                   string        `yaml:"url"`
	ConnectTimeout        time.Duration `yaml:"connect_timeout"`
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	Timeout               time.Duration `yaml:"timeout"`
	CAFile                string        `yaml:"ca_file"` // PEM roots to trust instead of the system's
	InsecureSkipVerify    bool          `yaml:"insecure_skip_verify"`
	// Authorization is a secret reference ("env:NAME", "file:PATH") to the
	// Authorization header value sent upstream for callers whose own
	// Authorization held their InferTrail token.
	Authorization string `yaml:"authorization"`
}

// mcpFlag collects repeatable --mcp NAME=URL flags.
type mcpFlag []mcpServerConfig

func (f *mcpFlag) String() string { return "" }

func (f *mcpFlag) Set(v string) error {
	name, u, ok := strings.Cut(v, "=")
	if !ok || name == "" || u == "" {
		return errors.New("want NAME=URL, such as payments=http://127.0.0.1:9000/mcp")
	}
	*f = append(*f, mcpServerConfig{Name: name, URL: u})
	return nil
}

// servers returns the configured upstream servers.
func (c *mcpConfig) servers() ([]mcp.Server, error) {
	var out []mcp.Server
	for i, s := range c.Servers {
		srv := mcp.Server{Name: s.Name, URL: s.URL, ConnectTimeout: s.ConnectTimeout,
			ResponseHeaderTimeout: s.ResponseHeaderTimeout, Timeout: s.Timeout}
		tc, err := tlsConfig(s.CAFile, s.InsecureSkipVerify, fmt.Sprintf("mcp server %d (%s)", i, s.Name))
		if err != nil {
			return nil, err
		}
		srv.TLS = tc
		if s.Authorization != "" {
			v, err := resolveSecret(s.Authorization, fmt.Sprintf("mcp server %d (%s) authorization", i, s.Name))
			if err != nil {
				return nil, err
			}
			srv.Authorization = v
		}
		out = append(out, srv)
	}
	return out, nil
}

func mcpCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "wrap" {
		return withHint(errors.New("mcp: want a subcommand"), "infertrail mcp wrap --name NAME (--server URL | --data DIR) -- SERVER-COMMAND [ARGS…]")
	}
	return mcpWrap(ctx, args[1:], os.Stdin, stdout, stderr)
}

// mcpWrap runs an MCP server command as a child process and relays its
// stdio, recording what the agent does.
func mcpWrap(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("mcp wrap", stderr)
	name := fs.String("name", "", "the server's `name` in records (required)")
	t := addTarget(fs)
	agent := fs.String("agent", "", "the agent `id` to record as the actor (default: the MCP client's name, as it claims it)")
	tenant := fs.String("tenant", "", "the records' `tenant` (default: the token's with --server, else default)")
	session := fs.String("session", "", "the records' session `id` (default: a new one per run)")
	durability := fs.String("durability", "", "request-ahead (default) or async")
	policyDir := fs.String("policy", "", "a `folder` of Rego policies to enforce on tool calls (docs/policy.md); a call that needs an approval is refused")
	if err := fs.Parse(args); err != nil {
		return err
	}
	command := fs.Args()
	switch {
	case *name == "":
		return withHint(errors.New("mcp wrap: --name is required"), "name the server as records should show it, such as --name github")
	case len(command) == 0:
		return withHint(errors.New("mcp wrap: no server command"), "give it after --: infertrail mcp wrap --name fs --data DIR -- npx @modelcontextprotocol/server-filesystem /tmp")
	}
	if err := t.check(); err != nil {
		return err
	}
	dur, err := mcp.ParseDurability(*durability)
	if err != nil {
		return err
	}
	// Logs go to stderr only: stdout is the protocol's.
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var rec infertrail.Recorder
	if *t.server != "" {
		c, err := client.New(client.Config{URL: *t.server, Token: resolveToken(*t.token)})
		if err != nil {
			return err
		}
		rec = c
	} else {
		lg, _, closeFn, err := t.openLog(ctx, stderr)
		if err != nil {
			return err
		}
		defer closeFn()
		rec = lg
		if *tenant == "" {
			*tenant = infertrail.DefaultTenant
		}
	}
	var engine infertrail.PolicyEngine
	if *policyDir != "" && *tenant == "" {
		return withHint(errors.New("mcp wrap: --policy with --server needs --tenant"), "the policy's load records need a tenant the token may write to")
	}
	if *policyDir != "" {
		e, err := policy.New(ctx, policy.Config{Dir: *policyDir, Recorder: rec, Tenant: *tenant, Logger: logger, History: true})
		if err != nil {
			return withHint(fmt.Errorf("mcp wrap: policy: %w", err), "fix the policy, or leave --policy out")
		}
		policyCtx, stopPolicy := context.WithCancel(ctx)
		defer stopPolicy()
		go e.Run(policyCtx)
		engine = e
	}
	gw, err := mcp.New(mcp.Config{Recorder: rec, Durability: dur, Logger: logger, Policy: engine})
	if err != nil {
		return err
	}
	if *session == "" {
		*session = "mcp-stdio:" + infertrail.NewUUID().String()
	}
	var actor infertrail.Actor
	if *agent != "" {
		actor = infertrail.Actor{ID: *agent, Type: "agent"}
	}

	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stderr = stderr
	serverIn, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	serverOut, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return withHint(fmt.Errorf("start the MCP server: %w", err), "check the command after --")
	}
	relayErr := gw.Stdio(ctx, mcp.StdioSession{Server: *name, Actor: actor, Tenant: *tenant, SessionID: *session},
		stdin, stdout, serverIn, serverOut)
	if ctx.Err() != nil && cmd.Process != nil {
		cmd.Process.Signal(os.Interrupt)
	}
	waitErr := cmd.Wait()
	closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := gw.Close(closeCtx); err != nil {
		return fmt.Errorf("mcp wrap: records not written: %w", err)
	}
	if relayErr != nil && !errors.Is(relayErr, context.Canceled) {
		logger.Warn("mcp wrap: relay ended", "err", relayErr)
	}
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		return exitError{max(ee.ExitCode(), 1)} // a signal (-1) is a failure too
	}
	return waitErr
}

var _ flag.Value = (*mcpFlag)(nil)
