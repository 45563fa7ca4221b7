package imapd

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
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/prometheus/client_golang/prometheus"

	"clustermail/mailrpc"
	"clustermail/mailstore"
	"clustermail/throttle"
)

// The local store and a remote node's are both Stores.
var (
	_ Store = (*mailstore.Store)(nil)
	_ Store = (*mailrpc.Client)(nil)
)

const (
	testUser = "alice@example.test"
	testPass = "secret"
)

// fakeBackend knows a few users (account = user name) over one store.
type fakeBackend struct {
	store   *mailstore.Store
	down    atomic.Bool // the owner node is down: Open and the store fail
	openErr error       // Open fails with this
	remote  Store       // Open returns this instead of the local store
	mu      sync.Mutex
	users   map[string]string
	quota   map[string]int64
}

func (b *fakeBackend) Authenticate(user, pass string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.users[strings.ToLower(user)]
	return strings.ToLower(user), ok && p == pass
}

func (b *fakeBackend) Open(account string) (Store, error) {
	if b.openErr != nil {
		return nil, b.openErr
	}
	if b.remote != nil {
		return b.remote, nil
	}
	return &flakyStore{Store: b.store, down: &b.down}, nil
}

func (b *fakeBackend) Quota(account string) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.quota[account], nil
}

func (b *fakeBackend) setQuota(account string, limit int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.quota[account] = limit
}

// flakyStore is a store whose owner node can go down: then every call
// fails as a remote store's would.
type flakyStore struct {
	Store
	down *atomic.Bool
}

var errOwnerDown = fmt.Errorf("node n2 unreachable: %w", ErrUnavailable)

func (f *flakyStore) check() error {
	if f.down.Load() {
		return errOwnerDown
	}
	return nil
}

func (f *flakyStore) EnsureAccount(a string) error {
	if err := f.check(); err != nil {
		return err
	}
	return f.Store.EnsureAccount(a)
}

func (f *flakyStore) Mailboxes(a string) ([]mailstore.MailboxInfo, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	return f.Store.Mailboxes(a)
}

func (f *flakyStore) Mailbox(a, n string) (mailstore.MailboxInfo, error) {
	if err := f.check(); err != nil {
		return mailstore.MailboxInfo{}, err
	}
	return f.Store.Mailbox(a, n)
}

func (f *flakyStore) Messages(a, n string) ([]mailstore.Message, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	return f.Store.Messages(a, n)
}

func (f *flakyStore) Message(a, n string, uid uint32) (mailstore.Message, error) {
	if err := f.check(); err != nil {
		return mailstore.Message{}, err
	}
	return f.Store.Message(a, n, uid)
}

func (f *flakyStore) Body(a, n string, uid uint32) ([]byte, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	return f.Store.Body(a, n, uid)
}

func (f *flakyStore) StoreFlags(a, n string, uids []uint32, op mailstore.FlagOp, flags []string, since uint64) ([]mailstore.Message, []uint32, error) {
	if err := f.check(); err != nil {
		return nil, nil, err
	}
	return f.Store.StoreFlags(a, n, uids, op, flags, since)
}

func (f *flakyStore) Expunge(a, n string, uids []uint32) ([]uint32, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	return f.Store.Expunge(a, n, uids)
}

func (f *flakyStore) Append(a, n string, flags []string, date time.Time, body []byte) (uint32, uint32, error) {
	if err := f.check(); err != nil {
		return 0, 0, err
	}
	return f.Store.Append(a, n, flags, date, body)
}

// harness is a real server on 127.0.0.1:0 over a mailstore in memory.
type harness struct {
	t       *testing.T
	store   *mailstore.Store
	backend *fakeBackend
	srv     *Server
	addr    string
	limiter *throttle.Limiter
	m       *Metrics
	logs    *logBuffer
	delays  chan time.Duration // login delays asked of Server.wait
}

// newHarness starts a server; adjust may change the config (and harness)
// before it starts.
func newHarness(t testing.TB, adjust func(*Config)) *harness {
	store, err := mailstore.Open("m", mailstore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	// Create the accounts before delivering: mailstore's first Deliver to
	// an unknown account currently lists INBOX twice (reported), which is
	// not what these tests are about.
	for _, a := range []string{testUser, "bob@example.test"} {
		if err := store.EnsureAccount(a); err != nil {
			t.Fatal(err)
		}
	}
	b := &fakeBackend{store: store,
		users: map[string]string{testUser: testPass, "bob@example.test": "hunter2"},
		quota: map[string]int64{}}
	cfg := Config{Name: "imap", Addr: "127.0.0.1:0", InsecureAuth: true}
	if adjust != nil {
		adjust(&cfg)
	}
	logs := &logBuffer{}
	limiter := throttle.New()
	m := NewMetrics(prometheus.NewRegistry())
	srv, err := New(cfg, b, limiter, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), m)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{store: store, backend: b, srv: srv, limiter: limiter, m: m, logs: logs,
		delays: make(chan time.Duration, 100)}
	srv.wait = func(d time.Duration) bool {
		select {
		case h.delays <- d:
		default:
		}
		return true
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	h.addr = srv.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if strings.Contains(logs.String(), "panic") {
			t.Errorf("server panicked:\n%s", logs.String())
		}
	})
	return h
}

// logBuffer collects the server's log lines.
type logBuffer struct {
	mu sync.Mutex
	sb strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.String()
}

// deliver puts a message in the user's INBOX as the queue worker would.
func (h *harness) deliver(t testing.TB, account, body string) uint32 {
	t.Helper()
	uid, _, err := h.store.Deliver(account, fmt.Sprintf("q%d/%s", time.Now().UnixNano(), account), time.Date(2024, 3, 5, 10, 0, 0, 0, time.UTC), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

// client is a go-imap client logged in as testUser.
func (h *harness) client(t testing.TB, handler *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(h.addr, &imapclient.Options{UnilateralDataHandler: handler})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	return c
}

// rawConn speaks IMAP line by line, for exact wire checks.
type rawConn struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func (h *harness) raw(t testing.TB) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawConn{t: t, conn: c, r: bufio.NewReader(c)}
	if g, _ := rc.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	return rc
}

// login authenticates a raw connection.
func (h *harness) rawLogin(t testing.TB) *rawConn {
	rc := h.raw(t)
	rc.ok("l", "LOGIN "+testUser+" "+testPass)
	return rc
}

// send writes s (CRLF added).
func (rc *rawConn) send(s string) {
	rc.t.Helper()
	_ = rc.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.conn.Write([]byte(s + "\r\n")); err != nil {
		rc.t.Fatalf("send %q: %v", s, err)
	}
}

// line reads one response line (without CRLF); ok is false at EOF.
func (rc *rawConn) line() (l string, ok bool) {
	rc.t.Helper()
	_ = rc.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := rc.r.ReadString('\n')
	if err != nil && l == "" {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			rc.t.Fatalf("no response: %v", err)
		}
		return "", false
	}
	return strings.TrimRight(l, "\r\n"), true
}

// cmd sends "tag line" and returns the untagged lines and the tagged one.
// Literals in responses are returned inline, as read.
func (rc *rawConn) cmd(tag, line string) (untagged []string, tagged string) {
	rc.t.Helper()
	rc.send(tag + " " + line)
	return rc.until(tag)
}

// until reads lines up to the one tagged tag.
func (rc *rawConn) until(tag string) (untagged []string, tagged string) {
	rc.t.Helper()
	for {
		l, ok := rc.line()
		if !ok {
			rc.t.Fatalf("connection closed waiting for %s; got %q", tag, untagged)
		}
		if strings.HasPrefix(l, tag+" ") {
			return untagged, l
		}
		untagged = append(untagged, l)
	}
}

// ok runs a command that must succeed.
func (rc *rawConn) ok(tag, line string) []string {
	rc.t.Helper()
	u, tagged := rc.cmd(tag, line)
	if !strings.HasPrefix(tagged, tag+" OK") {
		rc.t.Fatalf("%s: %q (untagged %q)", line, tagged, u)
	}
	return u
}

// closed reports whether the server closed the connection (after any
// lines it still sends, returned).
func (rc *rawConn) closed() ([]string, bool) {
	var lines []string
	for {
		_ = rc.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := rc.r.ReadString('\n')
		if l != "" {
			lines = append(lines, strings.TrimRight(l, "\r\n"))
		}
		if err != nil {
			var ne net.Error
			return lines, !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// selfSigned makes a TLS certificate for 127.0.0.1.
func selfSigned(t testing.TB) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "imapd test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// Test messages.
const (
	plainMsg = "From: Bob Sender <bob@example.test>\r\n" +
		"To: Alice <alice@example.test>\r\n" +
		"Subject: Lunch plans\r\n" +
		"Date: Tue, 05 Mar 2024 10:00:00 +0000\r\n" +
		"Message-ID: <lunch-1@example.test>\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"Shall we meet at noon? The usual place.\r\n"

	multipartMsg = "From: Carol <carol@example.test>\r\n" +
		"To: alice@example.test\r\n" +
		"Subject: =?UTF-8?Q?Rapport_f=C3=A9vrier?=\r\n" +
		"Date: Wed, 06 Mar 2024 09:30:00 +0100\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
		"\r\n" +
		"--b1\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n" +
		"\r\n" +
		"Le rapport de f=C3=A9vrier est pr=C3=AAt.\r\n" +
		"--b1\r\n" +
		"Content-Type: application/octet-stream; name=\"data.bin\"\r\n" +
		"Content-Disposition: attachment; filename=\"data.bin\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"\r\n" +
		"AAECAwQFBgc=\r\n" +
		"--b1--\r\n"
)

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
