package smtpd

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clustermail/routing"
)

// Test doubles: every address of example.test exists; the sender
// u@example.test has the password "secret".
const (
	testDomain = "example.test"
	testUser   = "u@example.test"
	testPass   = "secret"
)

type fakeRouter struct {
	mu       sync.Mutex
	accepted [][]byte
}

func (r *fakeRouter) Resolve(rcpt string) ([]routing.Target, error) {
	if !strings.EqualFold(domainOf(rcpt), testDomain) {
		return nil, routing.ErrNotHosted
	}
	return []routing.Target{{Addr: strings.ToLower(rcpt), Node: "n1"}}, nil
}

func (r *fakeRouter) ResolveAny(rcpt string) ([]routing.Target, error) {
	return []routing.Target{{Addr: rcpt, Node: "n1", Remote: !strings.EqualFold(domainOf(rcpt), testDomain)}}, nil
}

func (r *fakeRouter) Room(int64) error { return nil }

func (r *fakeRouter) Accept(_ context.Context, _, _ string, _ []routing.Target, body []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accepted = append(r.accepted, append([]byte(nil), body...))
	return nil
}

func (r *fakeRouter) messages() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.accepted...)
}

type fakeAuth struct{}

func (fakeAuth) Authenticate(user, pass string) (string, bool) {
	return testUser, strings.EqualFold(user, testUser) && pass == testPass
}

func (fakeAuth) MaySend(account, from string) bool { return strings.EqualFold(account, from) }

// testServer runs a listener on 127.0.0.1 with small limits; edit
// adjusts its configuration.
type testServer struct {
	srv    *Server
	addr   string
	router *fakeRouter
	tls    *tls.Config // the server's; clients skip verification
}

func startServer(t testing.TB, edit func(*Config)) *testServer {
	t.Helper()
	tlsConf := selfSigned(t)
	cfg := Config{Name: "smtp", Mode: ModeInbound, Addr: "127.0.0.1:0", Hostname: "mx.test", TLS: tlsConf,
		MaxMessageBytes: 16 << 20, MaxRecipients: 100, MaxLineLength: 1000, Timeout: 5 * time.Second, MaxConnections: 100}
	if edit != nil {
		edit(&cfg)
	}
	ts := &testServer{router: &fakeRouter{}, tls: tlsConf}
	srv, err := New(cfg, ts.router, fakeAuth{}, slog.New(slog.DiscardHandler), NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ts.srv, ts.addr = srv, srv.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ts
}

// selfSigned is a TLS configuration with a fresh certificate for mx.test.
func selfSigned(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.test"},
		DNSNames: []string{"mx.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// client speaks SMTP line by line, so tests see every reply.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

type reply struct {
	code int
	enh  string // the enhanced status code of the last line, if any
	text string // every line's text, joined by newlines
}

// dial connects; implicit says whether to start TLS at once. The greeting
// is not read.
func (ts *testServer) dial(t *testing.T, implicit bool) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if implicit {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		_ = tc.SetDeadline(time.Time{})
		c = tc
	}
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// greeted dials and checks the 220 greeting.
func (ts *testServer) greeted(t *testing.T) *client {
	t.Helper()
	c := ts.dial(t, ts.srv.cfg.ImplicitTLS)
	c.expect(220, "")
	return c
}

func (c *client) write(s string) {
	c.t.Helper()
	_ = c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read reads one reply, multi-line included.
func (c *client) read() (reply, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var r reply
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return r, err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 {
			return r, errors.New("short reply line " + strconv.Quote(line))
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return r, errors.New("bad reply line " + strconv.Quote(line))
		}
		text := line[4:]
		r.code = code
		if f, rest, ok := strings.Cut(text, " "); ok && strings.Count(f, ".") == 2 && f[0] >= '2' && f[0] <= '5' {
			r.enh, text = f, rest
		}
		lines = append(lines, text)
		if line[3] == ' ' {
			r.text = strings.Join(lines, "\n")
			return r, nil
		}
	}
}

// expect reads a reply and checks its code and, if given, its enhanced code.
func (c *client) expect(code int, enh string) reply {
	c.t.Helper()
	r, err := c.read()
	if err != nil {
		c.t.Fatalf("want %d %s, got error %v", code, enh, err)
	}
	if r.code != code || (enh != "" && r.enh != enh) {
		c.t.Fatalf("want %d %s, got %d %s %s", code, enh, r.code, r.enh, r.text)
	}
	return r
}

func (c *client) cmd(line string, code int, enh string) reply {
	c.t.Helper()
	c.write(line + "\r\n")
	return c.expect(code, enh)
}

// expectClosed reads until the server closes, returning what it said.
func (c *client) expectClosed() []reply {
	c.t.Helper()
	var got []reply
	for {
		r, err := c.read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatalf("connection still open after %v", got)
			}
			return got
		}
		got = append(got, r)
	}
}

// starttls upgrades the connection after EHLO.
func (c *client) starttls() {
	c.t.Helper()
	c.cmd("STARTTLS", 220, "")
	c.handshake()
}

// handshake starts TLS on the connection, as the client.
func (c *client) handshake() {
	c.t.Helper()
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	_ = tc.SetDeadline(time.Time{})
	c.c, c.r = tc, bufio.NewReader(tc)
}

// send runs one whole transaction and returns the reply to the data.
func (c *client) send(from, to, data string) reply {
	c.t.Helper()
	c.cmd("MAIL FROM:<"+from+">", 250, "")
	c.cmd("RCPT TO:<"+to+">", 250, "")
	c.cmd("DATA", 354, "")
	c.write(data)
	r, err := c.read()
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// login authenticates with AUTH PLAIN on a submission listener.
func plain(user, pass string) string {
	return "AUTH PLAIN " + b64("\x00"+user+"\x00"+pass)
}
