package export_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infertrail/infertrail/export"
)

// syslogMessage is one parsed RFC 5424 message.
type syslogMessage struct {
	pri                                     int
	timestamp, host, app, procid, msgid, sd string
	params                                  map[string]string
	msg                                     string
}

// rfc5424 matches a message whose structured data is one element.
var rfc5424 = regexp.MustCompile(`^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (\[(?:[^\]\\]|\\.)*\]) (.*)$`)
var sdParam = regexp.MustCompile(`([^ =\]"]+)="((?:[^"\\]|\\.)*)"`)

func parseSyslog(tb testing.TB, b []byte) syslogMessage {
	tb.Helper()
	m := rfc5424.FindSubmatch(b)
	if m == nil {
		tb.Fatalf("not an RFC 5424 message: %q", b)
	}
	pri, _ := strconv.Atoi(string(m[1]))
	out := syslogMessage{pri: pri, timestamp: string(m[2]), host: string(m[3]), app: string(m[4]), procid: string(m[5]),
		msgid: string(m[6]), sd: string(m[7]), msg: string(m[8]), params: map[string]string{}}
	for _, p := range sdParam.FindAllStringSubmatch(out.sd, -1) {
		out.params[p[1]] = regexp.MustCompile(`\\(.)`).ReplaceAllString(p[2], "$1")
	}
	return out
}

// syslogServer is a real syslog receiver over TCP or TLS that reads
// octet-counted frames (RFC 6587 section 3.4.1).
type syslogServer struct {
	tb    testing.TB
	ln    net.Listener
	mu    sync.Mutex
	msgs  []syslogMessage
	conns []net.Conn
	wg    sync.WaitGroup
}

func startSyslog(tb testing.TB, addr string, cfg *tls.Config) *syslogServer {
	tb.Helper()
	var ln net.Listener
	var err error
	if cfg != nil {
		ln, err = tls.Listen("tcp", addr, cfg)
	} else {
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		tb.Fatal(err)
	}
	s := &syslogServer{tb: tb, ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.read(c) }()
		}
	}()
	tb.Cleanup(s.stop)
	return s
}

func (s *syslogServer) read(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		n, err := r.ReadString(' ')
		if err != nil {
			return
		}
		size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
		if err != nil || size <= 0 || size > 1<<20 {
			s.tb.Errorf("bad frame length %q", n)
			return
		}
		b := make([]byte, size)
		if _, err := io.ReadFull(r, b); err != nil {
			s.tb.Errorf("short frame: %v", err)
			return
		}
		m := parseSyslog(s.tb, b)
		s.mu.Lock()
		s.msgs = append(s.msgs, m)
		s.mu.Unlock()
	}
}

// stop closes the listener and every connection.
func (s *syslogServer) stop() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *syslogServer) seqs() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int64
	for _, m := range s.msgs {
		n, _ := strconv.ParseInt(m.params["seq"], 10, 64)
		out = append(out, n)
	}
	return out
}

// selfSigned returns a server certificate for 127.0.0.1 and a client
// configuration that trusts it.
func selfSigned(tb testing.TB) (server, client *tls.Config) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "syslog test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12},
		&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// TestSyslogStream streams over TCP and over TLS to a receiver that is not
// listening at first, and that goes away and comes back while the stream
// is idle: every record arrives, in order, with its structured data.
func TestSyslogStream(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "tcp"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			var serverTLS, clientTLS *tls.Config
			if useTLS {
				serverTLS, clientTLS = selfSigned(t)
			}
			l := newRptLog(t)
			fill(t, l, 120)
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			addr := ln.Addr().String()
			ln.Close()

			sink, err := export.NewSyslogSink(export.SyslogConfig{Address: addr, TLS: clientTLS, Hostname: "audit host", AppName: "infertrail"})
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			runStream(t, fastStream(export.StreamConfig{Name: "syslog-" + name, Source: l.db, Sink: sink, OCSF: export.OCSFConfig{Origin: rptOrigin}}))
			time.Sleep(50 * time.Millisecond) // a few refused connections

			srv := startSyslog(t, addr, serverTLS)
			waitFor(t, "120 messages", func() bool { return len(srv.seqs()) >= 120 })
			waitFor(t, "the cursor", func() bool { return cursor(t, l, "siem:syslog-"+name) == 120 })
			if got := srv.seqs(); !slices.Equal(got, seqRange(0, 120)) {
				t.Fatalf("received %v", got)
			}

			// The receiver goes away while the stream is idle, records
			// come, and the receiver comes back.
			srv.stop()
			fill(t, l, 30)
			time.Sleep(50 * time.Millisecond)
			srv2 := startSyslog(t, addr, serverTLS)
			waitFor(t, "30 more messages", func() bool { return len(srv2.seqs()) >= 30 })
			if got := srv2.seqs(); !slices.Equal(got, seqRange(120, 150)) {
				t.Errorf("after reconnecting: %v", got)
			}

			srv.mu.Lock()
			defer srv.mu.Unlock()
			for i, m := range srv.msgs[:8] {
				if m.pri != 13*8+6 || m.host != "audit_host" || m.app != "infertrail" || m.procid != "-" {
					t.Errorf("header = %+v", m)
				}
				if _, err := time.Parse("2006-01-02T15:04:05.000000Z", m.timestamp); err != nil {
					t.Errorf("timestamp %q: %v", m.timestamp, err)
				}
				if m.msgid != m.params["kind"] || m.params["seq"] != strconv.Itoa(i) || m.params["id"] == "" || m.params["tenant"] == "" {
					t.Errorf("structured data = %v", m.params)
				}
				if !strings.HasPrefix(m.sd, "[infertrail@32473 ") {
					t.Errorf("sd = %s", m.sd)
				}
				var ev map[string]any
				if err := json.Unmarshal([]byte(m.msg), &ev); err != nil {
					t.Fatalf("message is not JSON: %v: %q", err, m.msg)
				}
				if lookup(ev, "metadata.uid") != m.params["id"] || lookup(ev, "unmapped.kind") != m.params["kind"] {
					t.Errorf("message does not match its structured data: %v", m.params)
				}
			}
		})
	}
}

// TestSyslogMessage checks escaping in structured data and the ASCII
// message.
func TestSyslogMessage(t *testing.T) {
	srv := startSyslog(t, "127.0.0.1:0", nil)
	sink, err := export.NewSyslogSink(export.SyslogConfig{Address: srv.ln.Addr().String(), Facility: 10, SDID: "trail@12345"})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ev := export.Event{Seq: 7, ID: "abc", Kind: "finding", Tenant: `a"b]c\d`, Severity: 2, Time: t0,
		JSON: []byte(`{"summary":"café 😀 \u2028","x":1}`)}
	if err := sink.Send(context.Background(), []export.Event{ev}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message", func() bool { return len(srv.seqs()) == 1 })
	srv.mu.Lock()
	m := srv.msgs[0]
	srv.mu.Unlock()
	if m.pri != 10*8+2 || m.msgid != "finding" || !strings.HasPrefix(m.sd, "[trail@12345 ") {
		t.Errorf("header = %+v", m)
	}
	if m.params["tenant"] != `a"b]c\d` {
		t.Errorf("tenant = %q from %s", m.params["tenant"], m.sd)
	}
	for _, c := range []byte(m.msg) {
		if c >= 0x80 {
			t.Fatalf("non-ASCII message %q", m.msg)
		}
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(m.msg), &got); err != nil || got["summary"] != "café 😀 \u2028" {
		t.Errorf("message %q decodes to %v (%v)", m.msg, got, err)
	}

	for _, c := range []export.SyslogConfig{{Address: "nohost"}, {Address: "x:1", Facility: 24}, {Address: "x:1", SDID: "bad id"}, {Address: "x:1", SDID: "x@y"}} {
		if _, err := export.NewSyslogSink(c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	// Nothing listens: Send fails within the dial timeout.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	s2, _ := export.NewSyslogSink(export.SyslogConfig{Address: addr, DialTimeout: time.Second})
	if err := s2.Send(context.Background(), []export.Event{ev}); err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("send to nobody: %v", err)
	}
}
