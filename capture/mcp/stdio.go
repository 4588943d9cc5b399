package mcp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/infertrail/infertrail"
)

// StdioSession describes one stdio session: an agent talking to an MCP
// server that runs as its child process, with the gateway in between.
type StdioSession struct {
	Server    string           // the server's name in records (mcp.server.name)
	Actor     infertrail.Actor // the acting identity, if known
	Tenant    string           // the records' tenant ("" leaves it to the recorder)
	SessionID string           // the records' session id
}

// Stdio relays newline-delimited JSON-RPC messages between a client
// (clientIn, clientOut) and a server (serverIn, serverOut) until the
// server's output ends, recording as the HTTP relay does. Every byte is
// relayed as it came, except a client message that is larger than
// MaxMessageBytes or a tool call the trail cannot record first or its
// policy does not let go ahead: those are answered with a JSON-RPC error
// instead. A tool call whose policy's obligations redact its arguments is
// forwarded with them redacted, as over HTTP. When the client's input ends,
// the server's input is closed, so that the server exits. Stdio returns
// when the server's output ends (the server exited or closed it), or ctx
// ends.
func (g *Gateway) Stdio(ctx context.Context, s StdioSession, clientIn io.Reader, clientOut io.Writer, serverIn io.WriteCloser, serverOut io.Reader) error {
	t := &tap{g: g, server: s.Server, transport: "pipe", id: identity{actor: s.Actor, tenant: s.Tenant}, sessionID: s.SessionID}
	var outMu sync.Mutex
	toClient := func(lines ...[]byte) error {
		outMu.Lock()
		defer outMu.Unlock()
		for _, l := range lines {
			if _, err := clientOut.Write(append(l, '\n')); err != nil {
				return err
			}
		}
		return nil
	}
	max := g.cfg.MaxMessageBytes

	// Client to server.
	go func() {
		defer serverIn.Close()
		r := bufio.NewReaderSize(clientIn, 64<<10)
		for {
			line, tooLong, err := readLine(r, max, nil)
			if tooLong {
				t.protocolError("client", nil, fmt.Sprintf("a message larger than %d bytes was refused", max))
				if toClient(errorResponse(nil, codeInvalidRequest, fmt.Sprintf("the message is larger than %d bytes, the most this gateway takes", max))) != nil {
					return
				}
			} else if len(line) > 0 {
				if !t.relayClient(ctx, line, serverIn, toClient) {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()

	// Server to client: relayed as read, captured up to max.
	r := bufio.NewReaderSize(serverOut, 64<<10)
	var werr error
	for {
		// Wait for the server's next message without holding the client's
		// output: meanwhile the client's relay may answer a message itself
		// (a refused tool call).
		r.Peek(1)
		outMu.Lock()
		line, tooLong, err := readLine(r, max, func(chunk []byte) {
			if werr == nil {
				_, werr = clientOut.Write(chunk)
			}
		})
		outMu.Unlock()
		switch {
		case tooLong:
			t.protocolError("server", nil, fmt.Sprintf("a message larger than %d bytes was relayed without being captured", max))
		case len(line) > 0:
			t.fromServer(line)
		}
		if werr != nil {
			t.end("the client went away before the answer came")
			return fmt.Errorf("write to the client: %w", werr)
		}
		if err != nil {
			t.end("the MCP server exited before answering")
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read from the server: %w", err)
		}
		if ctx.Err() != nil {
			t.end("the gateway stopped before the answer came")
			return ctx.Err()
		}
	}
}

// relayClient observes one line from the client and forwards it, or
// answers it when it must not be forwarded. It reports whether the relay
// goes on.
func (t *tap) relayClient(ctx context.Context, line []byte, serverIn io.Writer, toClient func(...[]byte) error) bool {
	msgs, err := parseMessages(line)
	if err != nil {
		t.protocolError("client", line, err.Error()) // relayed: the server answers as the specification requires
	} else {
		forward, refusals := t.fromClient(ctx, line, msgs, callHints{})
		if refusals != nil {
			return toClient(refusals...) == nil
		}
		line = forward
	}
	_, err = serverIn.Write(append(line, '\n'))
	return err == nil
}

// readLine reads one line (without its end) of at most max bytes. A longer
// line is read to its end and reported as tooLong, without its bytes.
// When relay is set, every byte read, line end included, goes to it as it
// comes. err is set when the input ended; line may hold a last line then.
func readLine(r *bufio.Reader, max int, relay func([]byte)) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := r.ReadSlice('\n')
		if relay != nil && len(chunk) > 0 {
			relay(chunk)
		}
		if !tooLong {
			if len(line)+len(chunk) > max+2 {
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
		}
		if tooLong {
			line = nil
		}
		return line, tooLong, err
	}
}
