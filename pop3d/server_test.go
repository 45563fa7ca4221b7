package pop3d

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
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
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"clustermail/mailstore"
	"clustermail/throttle"
)

const (
	alice     = "alice@example.test"
	alicePass = "secret pass" // a space: PASS takes the rest of the line
	bob       = "bob@example.test"
	bobPass   = "hunter2"
)

// testMessages are delivered to alice's INBOX. The first has a body line
// beginning with "." to exercise byte-stuffing.
var testMessages = []string{
	"From: carol@example.test\r\nSubject: one\r\n\r\nline 1\r\n.dotted line\r\nline 3\r\n",
	"From: dave@example.test\r\nSubject: two\r\n\r\nbody two\r\n",
	"From: erin@example.test\r\nSubject: three\r\n\r\nbody three\r\n",
}

// fakeBackend knows two users ("alice" and "bob", also by full address)
// and serves one store, which tests may make fail.
type fakeBackend struct {
	store   Store
	openErr atomic.Pointer[error]
	hook    atomic.Pointer[func(user string)] // called first by Authenticate
}

func (b *fakeBackend) Authenticate(user, pass string) (string, bool) {
	if h := b.hook.Load(); h != nil {
		(*h)(user)
	}
	switch {
	case (user == "alice" || user == alice) && pass == alicePass:
		return alice, true
	case (user == "bob" || user == bob) && pass == bobPass:
		return bob, true
	}
	return "", false
}

func (b *fakeBackend) Open(account string) (Store, error) {
	if p := b.openErr.Load(); p != nil {
		return nil, *p
	}
	return b.store, nil
}

// flakyStore fails chosen operations, as a remote store does when its node
// goes down mid-session.
type flakyStore struct {
	Store
	failBody, failExpunge atomic.Bool
}

func (f *flakyStore) Body(account, mailbox string, uid uint32) ([]byte, error) {
	if f.failBody.Load() {
		return nil, fmt.Errorf("fetching from node-2: %w", ErrUnavailable)
	}
	return f.Store.Body(account, mailbox, uid)
}

func (f *flakyStore) Expunge(account, mailbox string, uids []uint32) ([]uint32, error) {
	if f.failExpunge.Load() {
		return nil, fmt.Errorf("expunging on node-2: %w", ErrUnavailable)
	}
	return f.Store.Expunge(account, mailbox, uids)
}

// harness is a running server over an in-memory mailstore.
type harness struct {
	t       *testing.T
	srv     *Server
	ms      *mailstore.Store
	store   *flakyStore
	backend *fakeBackend
	limiter *throttle.Limiter
	reg     *prometheus.Registry
	uids    []uint32 // of testMessages in alice's INBOX
	served  chan error
}

// start runs a server with cfg (Addr, Name and InsecureAuth filled in when
// empty) and delivers testMessages to alice.
func start(t *testing.T, cfg Config) *harness {
	t.Helper()
	ms, err := mailstore.Open("m", mailstore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	h := &harness{t: t, ms: ms, store: &flakyStore{Store: ms}, limiter: throttle.New(), reg: prometheus.NewRegistry(), served: make(chan error, 1)}
	h.backend = &fakeBackend{store: h.store}
	for i, m := range testMessages {
		uid, _, err := ms.Deliver(alice, fmt.Sprintf("q%d/%s", i, alice), time.Now(), []byte(m))
		if err != nil {
			t.Fatal(err)
		}
		h.uids = append(h.uids, uid)
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.TLS == nil {
		cfg.InsecureAuth = true
	}
	cfg.Hostname = "pop.example.test"
	h.srv, err = New(cfg, h.backend, h.limiter, slog.New(slog.DiscardHandler), h.reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go func() { h.served <- h.srv.Serve() }()
	t.Cleanup(func() { h.shutdown() })
	return h
}

// shutdown stops the server and checks Serve ended cleanly; it is safe
// to call twice.
func (h *harness) shutdown() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		h.t.Errorf("Shutdown: %v", err)
	}
	select {
	case err, ok := <-h.served:
		if ok && err != nil {
			h.t.Errorf("Serve: %v", err)
		}
		if ok {
			close(h.served)
		}
	case <-ctx.Done():
		h.t.Error("Serve did not return after Shutdown")
	}
}

// inbox lists the UIDs in alice's INBOX.
func (h *harness) inbox() []uint32 {
	h.t.Helper()
	msgs, err := h.ms.Messages(alice, mailstore.Inbox)
	if err != nil {
		h.t.Fatal(err)
	}
	var uids []uint32
	for _, m := range msgs {
		uids = append(uids, m.UID)
	}
	return uids
}

func (h *harness) counter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		h.t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// client is a raw line client; every operation has a deadline so a
// misbehaving server fails the test instead of hanging it.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (h *harness) dial() *client {
	h.t.Helper()
	c, err := net.Dial("tcp", h.srv.Addr().String())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return &client{t: h.t, c: c, r: bufio.NewReader(c)}
}

// dialGreeted dials and checks the greeting.
func (h *harness) dialGreeted() *client {
	h.t.Helper()
	c := h.dial()
	c.expect("+OK pop.example.test POP3 server ready")
	return c
}

// login dials and logs in as alice.
func (h *harness) login() *client {
	h.t.Helper()
	c := h.dialGreeted()
	c.cmd("USER alice", "+OK")
	c.cmd("PASS "+alicePass, "+OK maildrop has 3 messages")
	return c
}

func (c *client) send(line string) {
	c.t.Helper()
	_ = c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.c.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatalf("writing %q: %v", line, err)
	}
}

func (c *client) line() string {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading a reply: %v (got %q)", err, s)
	}
	if !strings.HasSuffix(s, "\r\n") {
		c.t.Fatalf("reply %q does not end in CRLF", s)
	}
	return strings.TrimSuffix(s, "\r\n")
}

// expect reads a line and checks its beginning.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	s := c.line()
	if !strings.HasPrefix(s, prefix) {
		c.t.Fatalf("got %q, want %q...", s, prefix)
	}
	return s
}

// cmd sends a command and checks the beginning of its reply.
func (c *client) cmd(line, prefix string) string {
	c.t.Helper()
	c.send(line)
	return c.expect(prefix)
}

// data reads the rest of a multi-line response, raw (still stuffed).
func (c *client) data() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l := c.line()
		if l == "." {
			return b.String()
		}
		b.WriteString(l + "\r\n")
	}
}

// closed checks the server closes the connection with nothing more said,
// then closes the client's side, which ends the server's lingering close.
func (c *client) closed() {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if s, err := c.r.ReadString('\n'); err == nil || s != "" {
		c.t.Fatalf("connection still open: read %q, %v", s, err)
	}
	c.c.Close()
}

func TestSession(t *testing.T) {
	h := start(t, Config{})
	c := h.dialGreeted()
	c.cmd("CAPA", "+OK")
	if got, want := c.data(), "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN\r\nIMPLEMENTATION clustermail\r\n"; got != want {
		t.Errorf("CAPA = %q, want %q", got, want)
	}
	c.cmd("NOOP", "-ERR command not valid before login")
	c.cmd("PASS "+alicePass, "-ERR send USER first")
	c.cmd("user alice", "+OK")
	c.cmd("pass "+alicePass, "+OK maildrop has 3 messages (")
	c.cmd("USER alice", "-ERR command not valid after login")
	c.cmd("CAPA", "+OK")
	if got := c.data(); strings.Contains(got, "USER") || strings.Contains(got, "SASL") {
		t.Errorf("CAPA after login = %q, offers login mechanisms", got)
	}

	info, err := h.ms.Mailbox(alice, mailstore.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	var list, uidl strings.Builder
	for i, m := range testMessages {
		total += len(m)
		fmt.Fprintf(&list, "%d %d\r\n", i+1, len(m))
		fmt.Fprintf(&uidl, "%d %d.%d\r\n", i+1, info.UIDValidity, h.uids[i])
	}
	steps := []struct {
		cmd, reply, data string // data: the multi-line body, if any
	}{
		{"STAT", fmt.Sprintf("+OK 3 %d", total), ""},
		{"LIST", fmt.Sprintf("+OK 3 messages (%d octets)", total), list.String()},
		{"LIST 2", fmt.Sprintf("+OK 2 %d", len(testMessages[1])), ""},
		{"LIST 4", "-ERR no such message", ""},
		{"LIST 0", "-ERR no such message", ""},
		{"LIST x", "-ERR invalid message number", ""},
		{"LIST 1 2", "-ERR syntax error", ""},
		{"UIDL", "+OK", uidl.String()},
		{"UIDL 3", fmt.Sprintf("+OK 3 %d.%d", info.UIDValidity, h.uids[2]), ""},
		{"RETR 1", fmt.Sprintf("+OK %d octets", len(testMessages[0])),
			"From: carol@example.test\r\nSubject: one\r\n\r\nline 1\r\n..dotted line\r\nline 3\r\n"},
		{"TOP 1 0", "+OK", "From: carol@example.test\r\nSubject: one\r\n\r\n"},
		{"TOP 1 2", "+OK", "From: carol@example.test\r\nSubject: one\r\n\r\nline 1\r\n..dotted line\r\n"},
		{"TOP 2 99999999999", "+OK", testMessages[1]},
		{"TOP 1", "-ERR syntax error", ""},
		{"TOP 1 -1", "-ERR invalid line count", ""},
		{"RETR", "-ERR syntax error", ""},
		{"DELE 2", "+OK message 2 deleted", ""},
		{"DELE 2", "-ERR message 2 already deleted", ""},
		{"RETR 2", "-ERR message 2 already deleted", ""},
		{"LIST 2", "-ERR message 2 already deleted", ""},
		{"STAT", fmt.Sprintf("+OK 2 %d", total-len(testMessages[1])), ""},
		{"LIST", "+OK 2 messages", strings.Replace(list.String(), fmt.Sprintf("2 %d\r\n", len(testMessages[1])), "", 1)},
		{"RSET", fmt.Sprintf("+OK maildrop has 3 messages (%d octets)", total), ""},
		{"LIST 2", "+OK 2", ""},
		{"NOOP", "+OK", ""},
		{"NOOP 1", "-ERR syntax error", ""},
		{"APOP alice 0123456789abcdef", "-ERR unknown command", ""},
		{"STLS", "-ERR command not valid after login", ""},
	}
	for _, s := range steps {
		c.cmd(s.cmd, s.reply)
		if s.data != "" {
			if got := c.data(); got != s.data {
				t.Errorf("%s: data %q, want %q", s.cmd, got, s.data)
			}
		}
	}
	c.cmd("QUIT", "+OK pop.example.test POP3 server signing off (0 messages deleted)")
	c.closed()
	// RSET undid the DELE: nothing went.
	if got := h.inbox(); len(got) != 3 {
		t.Errorf("INBOX after RSET and QUIT = %v, want all three", got)
	}
	// RETR'd messages are flagged \Seen for IMAP; TOP does not count.
	for i, uid := range h.uids {
		m, err := h.ms.Message(alice, mailstore.Inbox, uid)
		if err != nil {
			t.Fatal(err)
		}
		if seen := hasFlag(m.Flags, `\Seen`); seen != (i == 0) {
			t.Errorf("message %d flags %v", i+1, m.Flags)
		}
	}
}

func TestQuitDeletes(t *testing.T) {
	h := start(t, Config{})
	c := h.login()
	c.cmd("DELE 1", "+OK")
	c.cmd("DELE 3", "+OK")
	c.cmd("QUIT", "+OK pop.example.test POP3 server signing off (2 messages deleted)")
	c.closed()
	if got := h.inbox(); len(got) != 1 || got[0] != h.uids[1] {
		t.Errorf("INBOX = %v, want only %d", got, h.uids[1])
	}
	// A new session numbers what is left from 1, with its old UIDL.
	c = h.dialGreeted()
	c.cmd("USER alice", "+OK")
	c.cmd("PASS "+alicePass, "+OK maildrop has 1 messages")
	c.cmd("UIDL 1", "+OK "+h.uidl(1, h.uids[1]))
	c.cmd("LIST 2", "-ERR no such message")
}

// uidl is the UIDL line of message number n with the given UID.
func (h *harness) uidl(n int, uid uint32) string {
	h.t.Helper()
	info, err := h.ms.Mailbox(alice, mailstore.Inbox)
	if err != nil {
		h.t.Fatal(err)
	}
	return fmt.Sprintf("%d %d.%d", n, info.UIDValidity, uid)
}

func TestDroppedConnectionDeletesNothing(t *testing.T) {
	h := start(t, Config{})
	c := h.login()
	c.cmd("DELE 1", "+OK")
	c.cmd("DELE 2", "+OK")
	c.c.Close()
	// Shutdown waits for the session to end.
	h.shutdown()
	if got := h.inbox(); len(got) != 3 {
		t.Errorf("INBOX after a dropped connection = %v, want all three", got)
	}
}

func TestShutdownEndsIdleSessions(t *testing.T) {
	h := start(t, Config{})
	c := h.login()
	c.cmd("DELE 1", "+OK")
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.shutdown()
	}()
	c.expect(replyShutdown)
	c.closed()
	<-done
	if got := h.inbox(); len(got) != 3 {
		t.Errorf("INBOX after shutdown = %v, want all three", got)
	}
	if _, err := net.Dial("tcp", h.srv.Addr().String()); err == nil {
		t.Error("still accepting after Shutdown")
	}
}

func TestHiddenAndEmpty(t *testing.T) {
	h := start(t, Config{})
	// An IMAP client flagged message 2 \Deleted without expunging it.
	if _, _, err := h.ms.StoreFlags(alice, mailstore.Inbox, h.uids[1:2], mailstore.FlagsAdd, []string{`\Deleted`}, 0); err != nil {
		t.Fatal(err)
	}
	c := h.dialGreeted()
	c.cmd("USER alice", "+OK")
	c.cmd("PASS "+alicePass, "+OK maildrop has 2 messages")
	c.cmd("UIDL 2", "+OK "+h.uidl(2, h.uids[2]))
	c.cmd("QUIT", "+OK")

	// Bob authenticates but has never received mail: an empty maildrop.
	c = h.dialGreeted()
	c.cmd("USER "+bob, "+OK")
	c.cmd("PASS "+bobPass, "+OK maildrop has 0 messages (0 octets)")
	c.cmd("LIST", "+OK 0 messages")
	if got := c.data(); got != "" {
		t.Errorf("LIST = %q", got)
	}
	c.cmd("RETR 1", "-ERR no such message")
	c.cmd("QUIT", "+OK")
}

func TestBackendUnavailable(t *testing.T) {
	h := start(t, Config{})
	down := fmt.Errorf("owner node-2: %w", ErrUnavailable)
	h.backend.openErr.Store(&down)
	c := h.dialGreeted()
	c.cmd("USER alice", "+OK")
	c.cmd("PASS "+alicePass, replyUnavailable)
	// Still in AUTHORIZATION: the client may retry once the node is back.
	c.cmd("STAT", "-ERR command not valid before login")
	h.backend.openErr.Store(nil)
	c.cmd("USER alice", "+OK")
	c.cmd("PASS "+alicePass, "+OK maildrop has 3 messages")

	h.store.failBody.Store(true)
	c.cmd("RETR 1", "-ERR [SYS/TEMP]")
	c.cmd("TOP 1 0", "-ERR [SYS/TEMP]")
	h.store.failBody.Store(false)
	c.cmd("RETR 1", "+OK")
	c.data()

	// A message expunged by another session since login.
	if _, err := h.ms.Expunge(alice, mailstore.Inbox, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.ms.StoreFlags(alice, mailstore.Inbox, h.uids[2:], mailstore.FlagsAdd, []string{`\Deleted`}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ms.Expunge(alice, mailstore.Inbox, nil); err != nil {
		t.Fatal(err)
	}
	c.cmd("RETR 3", "-ERR message 3 was deleted by another session")

	h.store.failExpunge.Store(true)
	c.cmd("DELE 1", "+OK")
	c.cmd("QUIT", "-ERR [SYS/TEMP] some messages were not deleted")
	c.closed()
	if got := h.inbox(); len(got) != 2 {
		t.Errorf("INBOX = %v, want messages 1 and 2 still there", got)
	}
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name    string
		login   bool
		send    []string
		replies []string // expected reply prefixes, in order
		closed  bool     // the server closes after the replies
	}{
		{name: "unknown command", send: []string{"HELO x", "USER alice"}, replies: []string{"-ERR unknown command", "+OK"}},
		{name: "http", send: []string{"GET / HTTP/1.1"}, replies: []string{"-ERR unknown command"}},
		{name: "nul", send: []string{"NO\x00OP"}, replies: []string{"-ERR invalid characters"}},
		{name: "binary", send: []string{"\x16\x03\x01\x02\x00\x01\xff"}, replies: []string{"-ERR invalid characters"}},
		{name: "empty", send: []string{""}, replies: []string{"-ERR empty command"}},
		{name: "bare lf accepted", send: []string{"USER alice\n"}, replies: []string{"+OK"}},
		{name: "long line", send: []string{"USER " + strings.Repeat("a", 600), "USER alice"},
			replies: []string{"-ERR line too long", "+OK"}},
		{name: "longer than the buffer", send: []string{strings.Repeat("b", 5000), "USER alice"},
			replies: []string{"-ERR line too long", "+OK"}},
		{name: "long lines close", send: []string{strings.Repeat("c", 600), strings.Repeat("c", 600), strings.Repeat("c", 600)},
			replies: []string{"-ERR line too long", "-ERR line too long", "-ERR line too long, closing connection"}, closed: true},
		{name: "endless line", send: []string{strings.Repeat("d", 40000)},
			replies: []string{"-ERR line too long, closing connection"}, closed: true},
		{name: "wrong state before login", send: []string{"RETR 1", "DELE 1", "RSET"},
			replies: []string{"-ERR command not valid before login", "-ERR command not valid before login", "-ERR command not valid before login"}},
		{name: "wrong state after login", login: true, send: []string{"USER bob", "PASS x", "AUTH PLAIN"},
			replies: []string{"-ERR command not valid after login", "-ERR command not valid after login", "-ERR command not valid after login"}},
		{name: "too many bad commands", send: repeat("XXXX", maxBadCommands),
			replies: append(repeat("-ERR unknown command", maxBadCommands), "-ERR too many bad commands"), closed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, Config{})
			c := h.dialGreeted()
			if tc.login {
				c.cmd("USER alice", "+OK")
				c.cmd("PASS "+alicePass, "+OK")
			}
			for _, s := range tc.send {
				if strings.HasSuffix(s, "\n") {
					_ = c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
					if _, err := c.c.Write([]byte(s)); err != nil {
						t.Fatal(err)
					}
					continue
				}
				c.send(s)
			}
			for _, r := range tc.replies {
				c.expect(r)
			}
			if tc.closed {
				c.closed()
			} else {
				c.cmd("QUIT", "+OK")
			}
		})
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestIdleTimeout(t *testing.T) {
	h := start(t, Config{Timeout: time.Second})
	c := h.dialGreeted()
	// Half a command does not keep the session alive.
	_ = c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.c.Write([]byte("NO")); err != nil {
		t.Fatal(err)
	}
	c.expect("-ERR disconnected for inactivity")
	c.closed()
}

func TestConnectionLimit(t *testing.T) {
	h := start(t, Config{MaxConnections: 1})
	first := h.dialGreeted()
	second := h.dial()
	second.expect("-ERR [SYS/TEMP] too many connections")
	second.closed()
	if got := h.counter(h.srv.m.refused); got != 1 {
		t.Errorf("refused = %v, want 1", got)
	}
	first.cmd("QUIT", "+OK")
	first.closed()
	h.waitSlotFreed()
}

// waitSlotFreed dials until a session is greeted again. The slot of a
// refused or ended session is freed as the session ends, just after the
// client sees the connection close: retry until then, bounded.
func (h *harness) waitSlotFreed() {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c := h.dial()
		if strings.HasPrefix(c.line(), "+OK") {
			c.cmd("QUIT", "+OK")
			return
		}
		c.c.Close()
	}
	h.t.Fatal("the connection slot was never freed")
}

func TestSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := &fakeBackend{}
	var servers []*Server
	for _, name := range []string{"pop3", "pop3s"} {
		s, err := New(Config{Name: name, InsecureAuth: true}, b, nil, nil, reg)
		if err != nil {
			t.Fatalf("New(%s): %v", name, err)
		}
		servers = append(servers, s)
	}
	servers[1].m.authFailures.Inc()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "clustermail_pop3_auth_failures_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	if got["pop3"] != 0 || got["pop3s"] != 1 || len(got) != 2 {
		t.Errorf("auth failures by listener = %v", got)
	}
}

func TestNewRefusesUselessConfig(t *testing.T) {
	for _, cfg := range []Config{
		{ImplicitTLS: true},
		{}, // no TLS and no insecure auth: nobody could log in
	} {
		if _, err := New(cfg, &fakeBackend{}, nil, nil, nil); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

// TestLoginThrottled checks failed logins are counted by IP and user and
// slow the next attempt, without waiting the delay out.
func TestLoginThrottled(t *testing.T) {
	h := start(t, Config{})
	var mu sync.Mutex
	var waited []time.Duration
	h.srv.wait = func(d time.Duration) bool {
		mu.Lock()
		defer mu.Unlock()
		waited = append(waited, d)
		return true
	}
	c := h.dialGreeted()
	for i := range maxAuthFailures {
		c.cmd("USER Alice", "+OK")
		c.cmd("PASS wrong", "-ERR [AUTH] invalid user name or password")
		if i == maxAuthFailures-1 {
			c.closed()
		}
	}
	if d := h.limiter.Delay("user:alice"); d != time.Second {
		t.Errorf("delay for user:alice after %d failures = %v, want 1s", maxAuthFailures, d)
	}
	if d := h.limiter.Delay("ip:127.0.0.1"); d != time.Second {
		t.Errorf("delay for the IP = %v, want 1s", d)
	}
	// The next attempt, even with the right password, waits first.
	c = h.dialGreeted()
	c.cmd("USER alice", "+OK")
	c.cmd("PASS "+alicePass, "+OK")
	c.cmd("QUIT", "+OK")
	mu.Lock()
	if len(waited) != 1 || waited[0] != time.Second {
		t.Errorf("waited %v, want [1s]", waited)
	}
	mu.Unlock()
	// Success forgets the user, not the IP that guessed.
	if d := h.limiter.Delay("user:alice"); d != 0 {
		t.Errorf("user delay after success = %v", d)
	}
	if d := h.limiter.Delay("ip:127.0.0.1"); d == 0 {
		t.Error("IP delay forgotten after another user's success")
	}
	if got := h.counter(h.srv.m.authFailures); got != maxAuthFailures {
		t.Errorf("auth failures metric = %v, want %d", got, maxAuthFailures)
	}
}

func TestAuthPlain(t *testing.T) {
	h := start(t, Config{})
	plain := func(authz, user, pass string) string {
		return base64Std(authz + "\x00" + user + "\x00" + pass)
	}
	c := h.dialGreeted()
	c.cmd("AUTH", "+OK")
	if got := c.data(); got != "PLAIN\r\n" {
		t.Errorf("AUTH mechanisms = %q", got)
	}
	c.cmd("AUTH CRAM-MD5", "-ERR unsupported authentication mechanism")
	c.cmd("AUTH PLAIN !!!", "-ERR invalid base64")
	c.cmd("AUTH PLAIN "+base64Std("no nuls"), "-ERR malformed PLAIN response")
	c.cmd("AUTH PLAIN "+plain("bob", "alice", alicePass), "-ERR [AUTH] authorization identity")
	c.cmd("AUTH PLAIN "+plain("", "alice", "nope"), "-ERR [AUTH] invalid user name or password")
	c.cmd("AUTH PLAIN", "+ ")
	c.cmd("*", "-ERR authentication cancelled")
	c.cmd("AUTH PLAIN", "+ ")
	c.cmd(strings.Repeat("A", 2000), "-ERR line too long")
	c.cmd("AUTH PLAIN", "+ ")
	c.cmd(plain("alice", "alice", alicePass), "+OK maildrop has 3 messages")
	c.cmd("QUIT", "+OK")

	// Initial response, long enough to need the AUTH line allowance.
	c = h.dialGreeted()
	long := plain("", "alice", alicePass+strings.Repeat("x", 500))
	c.cmd("AUTH PLAIN "+long, "-ERR [AUTH] invalid user name or password")
	c.cmd("AUTH PLAIN "+plain("", alice, alicePass), "+OK maildrop has 3 messages")
	c.cmd("QUIT", "+OK")
}

func base64Std(s string) string {
	return base64.StdEncoding.EncodeToString([]byte(s))
}

// testTLS returns a server configuration with a self-signed certificate
// for 127.0.0.1 and localhost, and a client configuration trusting it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	server, client, _ = testCert(t)
	return server, client
}

// testCert is testTLS that also returns the certificate in PEM, for
// clients outside Go.
func testCert(t *testing.T) (server, client *tls.Config, certPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "pop.example.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
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
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestSTLS(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	h := start(t, Config{TLS: srvTLS})
	c := h.dialGreeted()
	c.cmd("CAPA", "+OK")
	if got := c.data(); !strings.Contains(got, "STLS\r\n") || strings.Contains(got, "USER") || strings.Contains(got, "SASL") {
		t.Errorf("CAPA before TLS = %q: want STLS, not USER nor SASL", got)
	}
	c.cmd("AUTH", "+OK")
	if got := c.data(); got != "" {
		t.Errorf("AUTH before TLS lists %q", got)
	}
	c.cmd("USER alice", replyTLSRequired)
	c.cmd("PASS "+alicePass, replyTLSRequired)
	c.cmd("AUTH PLAIN "+base64Std("\x00alice\x00"+alicePass), replyTLSRequired)
	c.cmd("STLS", "+OK begin TLS negotiation")
	tc := tls.Client(c.c, cliTLS)
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = &client{t: t, c: tc, r: bufio.NewReader(tc)}
	c.cmd("CAPA", "+OK")
	if got := c.data(); strings.Contains(got, "STLS") || !strings.Contains(got, "USER\r\n") {
		t.Errorf("CAPA inside TLS = %q: want USER, not STLS", got)
	}
	c.cmd("STLS", "-ERR STLS not available")
	c.cmd("USER alice", "+OK")
	c.cmd("PASS "+alicePass, "+OK maildrop has 3 messages")
	c.cmd("RETR 2", "+OK")
	if got := c.data(); got != testMessages[1] {
		t.Errorf("RETR 2 = %q", got)
	}
	c.cmd("QUIT", "+OK")
}

func TestSTLSRefusesPipelinedCommands(t *testing.T) {
	srvTLS, _ := testTLS(t)
	h := start(t, Config{TLS: srvTLS})
	c := h.dialGreeted()
	// Sent in one write, so the server has USER buffered when it reads STLS.
	c.send("STLS\r\nUSER alice")
	c.expect("-ERR commands sent after STLS")
	c.closed()
}

func TestImplicitTLS(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	h := start(t, Config{Name: "pop3s", TLS: srvTLS, ImplicitTLS: true, MaxConnections: 1})
	dial := func() *client {
		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", h.srv.Addr().String(), cliTLS)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		return &client{t: t, c: tc, r: bufio.NewReader(tc)}
	}
	c := dial()
	c.expect("+OK pop.example.test POP3 server ready")
	c.cmd("CAPA", "+OK")
	if got := c.data(); strings.Contains(got, "STLS") || !strings.Contains(got, "USER") {
		t.Errorf("CAPA = %q", got)
	}
	c.cmd("STLS", "-ERR STLS not available")
	// The refusal of a connection over the limit is readable inside TLS.
	over := dial()
	over.expect("-ERR [SYS/TEMP] too many connections")
	c.cmd("USER alice", "+OK")
	c.cmd("PASS "+alicePass, "+OK maildrop has 3 messages")
	c.cmd("QUIT", "+OK")
}

func TestErrorsAreTemporary(t *testing.T) {
	// Any Open error, not only ErrUnavailable, gives [SYS/TEMP]: a
	// wrong answer would be an empty or foreign mailbox.
	h := start(t, Config{})
	broken := errors.New("connection reset by peer")
	h.backend.openErr.Store(&broken)
	c := h.dialGreeted()
	c.cmd("USER alice", "+OK")
	c.cmd("PASS "+alicePass, replyUnavailable)
}

func TestBackendPanicKeepsServing(t *testing.T) {
	h := start(t, Config{})
	hook := func(user string) {
		if user == "boom" {
			panic("backend bug")
		}
	}
	h.backend.hook.Store(&hook)
	c := h.dialGreeted()
	c.cmd("USER boom", "+OK")
	c.send("PASS x")
	c.closed()
	h.login().cmd("QUIT", "+OK")
}

func TestShutdownDeadline(t *testing.T) {
	h := start(t, Config{})
	stuck, release := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(release) })
	hook := func(string) {
		close(stuck)
		<-release
	}
	h.backend.hook.Store(&hook)
	c := h.dialGreeted()
	c.cmd("USER alice", "+OK")
	c.send("PASS " + alicePass)
	<-stuck
	// A session stuck in the backend does not hold Shutdown past its
	// deadline; its connection is closed.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want the deadline", err)
	}
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.r.ReadString('\n'); err == nil {
		t.Error("connection still open after Shutdown's deadline")
	}
}

func TestPipelining(t *testing.T) {
	h := start(t, Config{})
	c := h.dialGreeted()
	// RFC 2449 PIPELINING: commands in one write, replies in order.
	c.send("USER alice\r\nPASS " + alicePass + "\r\nSTAT\r\nLIST 2\r\nDELE 9")
	for _, want := range []string{"+OK", "+OK maildrop has 3", "+OK 3 ", "+OK 2 ", "-ERR no such message"} {
		c.expect(want)
	}
	// A reply is sent even when the start of the next command is already
	// in: the client may be waiting for it before finishing that line.
	_ = c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.c.Write([]byte("NOOP\r\nRS")); err != nil {
		t.Fatal(err)
	}
	c.expect("+OK")
	c.cmd("ET", "+OK maildrop has 3 messages")
	c.cmd("QUIT", "+OK")
}
