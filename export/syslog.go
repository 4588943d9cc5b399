package export

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// SyslogConfig configures a syslog sink. Zero values mean the defaults.
type SyslogConfig struct {
	// Address is the receiver's host:port (required; syslog over TLS
	// conventionally listens on 6514).
	Address string
	// TLS, if set, secures the connection (RFC 5425); nil is plain TCP.
	TLS *tls.Config
	// Facility is the RFC 5424 facility, 1 to 23; 0 means 13 (log audit).
	Facility int
	// Hostname, AppName and SDID fill the message header and the
	// structured data element (defaults: the host's name, "infertrail"
	// and "infertrail@32473", 32473 being the private enterprise number
	// reserved for examples: set your own).
	Hostname string
	AppName  string
	SDID     string
	// DialTimeout bounds connecting (default 10s); WriteTimeout bounds
	// writing one batch (default 30s).
	DialTimeout  time.Duration
	WriteTimeout time.Duration
}

// SyslogSink writes OCSF events as RFC 5424 syslog messages over TCP or
// TLS, framed by octet counting (RFC 6587 section 3.4.1, as RFC 5425
// requires over TLS). Each message carries the event's sequence number,
// id, kind and tenant as structured data, and the OCSF event, in ASCII
// JSON, as its message.
//
// TCP syslog has no application acknowledgement: a batch counts as
// delivered once it is written and flushed to the socket. Bytes in the
// kernel's buffers when the receiver dies are lost, so delivery is at least
// once only up to the socket. Before each batch the sink checks that the
// receiver has not closed the connection, and reconnects if it has.
type SyslogSink struct {
	cfg  SyslogConfig
	conn net.Conn
	w    *bufio.Writer
}

// NewSyslogSink validates cfg and returns a sink; it connects on the first
// Send.
func NewSyslogSink(cfg SyslogConfig) (*SyslogSink, error) {
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return nil, fmt.Errorf("syslog sink: address %q: want host:port", cfg.Address)
	}
	switch {
	case cfg.Facility == 0:
		cfg.Facility = 13
	case cfg.Facility < 0 || cfg.Facility > 23:
		return nil, fmt.Errorf("syslog sink: facility %d: want 0 to 23", cfg.Facility)
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	cfg.Hostname = headerField(cfg.Hostname, 255)
	cfg.AppName = headerField(cmp.Or(cfg.AppName, "infertrail"), 48)
	if cfg.SDID == "" {
		cfg.SDID = "infertrail@32473"
	}
	if !validSDName(cfg.SDID, true) {
		return nil, fmt.Errorf("syslog sink: sd_id %q: want a name of at most 32 printable characters, without space, '=', ']' or '\"', such as infertrail@32473", cfg.SDID)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	return &SyslogSink{cfg: cfg}, nil
}

// headerField makes s a valid header field: printable US-ASCII without
// spaces, at most n bytes, "-" when empty.
func headerField(s string, n int) string {
	b := []byte(s)
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	if len(b) > n {
		b = b[:n]
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

// validSDName reports whether s is an SD-NAME (or, with at, an SD-ID
// whose part after '@' is digits).
func validSDName(s string, at bool) bool {
	name, num, hasAt := strings.Cut(s, "@")
	if hasAt && !at {
		return false
	}
	if name == "" || len(s) > 32 {
		return false
	}
	for _, c := range []byte(name) {
		if c < 33 || c > 126 || c == '=' || c == ']' || c == '"' {
			return false
		}
	}
	if hasAt {
		if num == "" {
			return false
		}
		for _, c := range []byte(num) {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// alive reports whether the receiver still holds the connection open. A
// receiver that closed it would get a write that the kernel accepts, and
// then drops when the receiver's reset comes back: a batch lost with no
// error. So before each batch the socket is looked at without blocking
// (peek, where the platform has it): nothing waiting means open; the end
// of the stream or an error means closed; bytes waiting (a TLS alert, say)
// are read through the connection, which sees the close.
func alive(c net.Conn) bool {
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if sc, ok := raw.(syscall.Conn); ok {
		switch peek(sc) {
		case peekOpen:
			return true
		case peekClosed:
			return false
		}
	}
	return aliveByRead(c)
}

// The states peek sees.
const (
	peekUnknown = iota // the platform cannot peek: read instead
	peekOpen           // nothing waiting
	peekClosed         // the end of the stream, or an error
	peekData           // bytes waiting
)

// aliveByRead reads with a short deadline: a read that times out means
// open; EOF or an error means closed. (A deadline already past would fail
// the read before it looks at the socket, hence a short wait; on a busy
// machine it can still pass before the read looks, which is why peek
// comes first.)
func aliveByRead(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(time.Millisecond))
	var b [1]byte
	_, err := c.Read(b[:])
	c.SetReadDeadline(time.Time{})
	var ne net.Error
	return err == nil || errors.As(err, &ne) && ne.Timeout()
}

func (s *SyslogSink) connect(ctx context.Context) error {
	d := &net.Dialer{Timeout: s.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	var conn net.Conn
	var err error
	if s.cfg.TLS != nil {
		td := &tls.Dialer{NetDialer: d, Config: s.cfg.TLS}
		conn, err = td.DialContext(ctx, "tcp", s.cfg.Address)
	} else {
		conn, err = d.DialContext(ctx, "tcp", s.cfg.Address)
	}
	if err != nil {
		return fmt.Errorf("connect to syslog receiver %s: %w", s.cfg.Address, err)
	}
	s.conn, s.w = conn, bufio.NewWriterSize(conn, 64<<10)
	return nil
}

func (s *SyslogSink) drop() {
	if s.conn != nil {
		s.conn.Close()
		s.conn, s.w = nil, nil
	}
}

// Send writes the batch and flushes it. On any error it drops the
// connection; the next Send reconnects.
func (s *SyslogSink) Send(ctx context.Context, events []Event) error {
	if s.conn != nil && !alive(s.conn) {
		s.drop()
	}
	if s.conn == nil {
		if err := s.connect(ctx); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(s.cfg.WriteTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	s.conn.SetWriteDeadline(deadline)
	conn := s.conn
	stop := context.AfterFunc(ctx, func() { conn.SetWriteDeadline(time.Now()) })
	defer stop()
	var msg []byte
	for _, e := range events {
		msg = s.appendMessage(msg[:0], e)
		s.w.WriteString(strconv.Itoa(len(msg)))
		s.w.WriteByte(' ')
		s.w.Write(msg)
	}
	if err := s.w.Flush(); err != nil {
		s.drop()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("write to syslog receiver %s: %w", s.cfg.Address, err)
	}
	return nil
}

// Close closes the connection.
func (s *SyslogSink) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn, s.w = nil, nil
	return err
}

// appendMessage appends the RFC 5424 message of an event:
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [SD-ID seq="…" id="…" kind="…" tenant="…"] MSG
func (s *SyslogSink) appendMessage(b []byte, e Event) []byte {
	sev := e.Severity
	if sev < 0 || sev > 7 {
		sev = 6
	}
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(s.cfg.Facility*8+sev), 10)
	b = append(b, ">1 "...)
	b = e.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z")
	b = append(b, ' ')
	b = append(b, s.cfg.Hostname...)
	b = append(b, ' ')
	b = append(b, s.cfg.AppName...)
	b = append(b, " - "...)
	b = append(b, headerField(e.Kind, 32)...)
	b = append(b, " ["...)
	b = append(b, s.cfg.SDID...)
	for _, p := range [][2]string{{"seq", strconv.FormatInt(e.Seq, 10)}, {"id", e.ID}, {"kind", e.Kind}, {"tenant", e.Tenant}} {
		if p[1] == "" {
			continue
		}
		b = append(b, ' ')
		b = append(b, p[0]...)
		b = append(b, `="`...)
		b = appendParamValue(b, p[1])
		b = append(b, '"')
	}
	b = append(b, "] "...)
	return appendASCIIJSON(b, e.JSON)
}

// appendParamValue appends an SD-PARAM value: UTF-8 with '"', '\' and ']'
// escaped.
func appendParamValue(b []byte, v string) []byte {
	for _, r := range strings.ToValidUTF8(v, "\uFFFD") {
		if r == '"' || r == '\\' || r == ']' {
			b = append(b, '\\')
		}
		b = utf8.AppendRune(b, r)
	}
	return b
}

// appendASCIIJSON appends JSON with every non-ASCII character written as a
// \u escape, which JSON allows inside strings (the only place such
// characters can be). The message is then plain ASCII: RFC 5424's MSG-ANY,
// which needs no byte-order mark.
func appendASCIIJSON(b, j []byte) []byte {
	for i := 0; i < len(j); {
		c := j[i]
		if c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(j[i:])
		i += n
		if r >= 0x10000 {
			r -= 0x10000
			b = appendU(b, 0xD800+(r>>10))
			b = appendU(b, 0xDC00+(r&0x3FF))
			continue
		}
		b = appendU(b, r)
	}
	return b
}

func appendU(b []byte, r rune) []byte {
	const hex = "0123456789abcdef"
	return append(b, '\\', 'u', hex[r>>12&0xF], hex[r>>8&0xF], hex[r>>4&0xF], hex[r&0xF])
}
