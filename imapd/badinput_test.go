package imapd

import (
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestBadInput sends what broken or hostile clients send. Each case gets a
// fresh connection; the answer must be a protocol error (BAD, or NO with a
// code), after which the connection either still works or is closed on
// purpose, and the server never panics (the harness checks its log).
func TestBadInput(t *testing.T) {
	h := newHarness(t, nil)
	h.deliver(t, testUser, plainMsg)
	long := "a NOOP " + strings.Repeat("x", 60*1024)
	deep := "s SEARCH " + strings.Repeat("(", 2000)

	tests := []struct {
		name    string
		login   bool
		select_ bool
		send    []string // written in order, each followed by CRLF
		want    []string // regexps matched by successive response lines, in order
		closed  bool     // the server closes the connection afterwards
	}{
		{name: "binary garbage before login", send: []string{"\x16\x03\x01\x02\x00\x01"}, want: []string{`^\* BAD`, `^\* BYE`}, closed: true},
		{name: "unknown command before login", send: []string{"a FROB"}, want: []string{`^a BAD`, `^\* BYE`}, closed: true},
		{name: "empty line", login: true, send: []string{""}, want: []string{`^\* BAD`}},
		{name: "tag without command", login: true, send: []string{"a1"}, want: []string{`^a1 BAD`}},
		{name: "unknown command", login: true, send: []string{"a1 FROB x y"}, want: []string{`^a1 BAD`}},
		{name: "select before login", send: []string{"s SELECT INBOX"}, want: []string{`^s BAD`}},
		{name: "fetch before select", login: true, send: []string{"f FETCH 1 FLAGS"}, want: []string{`^f BAD`}},
		{name: "login twice", login: true, send: []string{"l LOGIN a b"}, want: []string{`^l BAD`}},
		{name: "broken fetch", login: true, select_: true, send: []string{"f FETCH ((((("}, want: []string{`^f BAD`}},
		{name: "unknown fetch item", login: true, select_: true, send: []string{"f FETCH 1 (FLAGS BOGUS)"}, want: []string{`^f BAD`}},
		{name: "unknown fetch modifier", login: true, select_: true, send: []string{"f FETCH 1 FLAGS (VANISHED)"}, want: []string{`^f BAD`}},
		{name: "unknown select parameter", login: true, send: []string{"s SELECT INBOX (QRESYNC (1 2))"}, want: []string{`^s BAD`}},
		{name: "unknown store modifier", login: true, select_: true, send: []string{`s STORE 1 (NOPE 1) +FLAGS (\Seen)`}, want: []string{`^s BAD`}},
		{name: "unchangedsince 0 with star", login: true, select_: true, send: []string{`s STORE 1:* (UNCHANGEDSINCE 0) +FLAGS (\Seen)`}, want: []string{`^s BAD`}},
		{name: "nested too deep", login: true, select_: true, send: []string{deep}, want: []string{`^s BAD`}},
		{name: "sequence number overflow", login: true, select_: true, send: []string{"f FETCH 4294967296 FLAGS"}, want: []string{`^f BAD`}},
		{name: "sequence number zero", login: true, select_: true, send: []string{"f FETCH 0 FLAGS"}, want: []string{`^f BAD`}},
		{name: "bad date", login: true, send: []string{"a APPEND INBOX \"99-Foo-2024 00:00:00 +0000\" {5+}", "hello"}, want: []string{`^a BAD`}},
		{name: "unknown status item", login: true, send: []string{"s STATUS INBOX (MESSAGES COLOUR)"}, want: []string{`^s BAD`}},
		{name: "bad mailbox name", login: true, send: []string{"c CREATE a//b"}, want: []string{`^c NO`}},
		{name: "control character in name", login: true, send: []string{"c CREATE \"a\x01b\""}, want: []string{`^c (NO|BAD)`}},
		{name: "append literal too big", login: true, send: []string{"a APPEND INBOX {999999999}"}, want: []string{`^a NO \[TOOBIG\]`}},
		{name: "append non-sync literal too big", login: true, send: []string{"a APPEND INBOX {999999999+}", "x1 DELETE Sent"},
			want: []string{`^a NO \[TOOBIG\]`, `^\* BYE`}, closed: true},
		{name: "string literal too big", login: true, send: []string{"s SELECT {5000}"}, want: []string{`^s NO \[TOOBIG\]`}},
		{name: "non-sync string literal too big", login: true, send: []string{"s SELECT {5000+}", "x1 DELETE Sent"},
			want: []string{`^s NO \[TOOBIG\]`, `^\* BYE`}, closed: true},
		{name: "literal size overflow", login: true, send: []string{"a APPEND INBOX {99999999999999999999999}"}, want: []string{`^a BAD`}},
		{name: "command line too long", login: true, send: []string{long}, want: []string{`^(a|\*) BAD \[TOOBIG\]`, `^\* BYE`}, closed: true},
		{name: "idle ended by garbage", login: true, select_: true, send: []string{"i IDLE", "NOT DONE"}, want: []string{`^\+ `, `^i BAD`}},
		{name: "authenticate bad base64", send: []string{"a AUTHENTICATE PLAIN", "!!!"}, want: []string{`^\+`, `^a BAD`}},
		{name: "authenticate cancelled", send: []string{"a AUTHENTICATE PLAIN", "*"}, want: []string{`^\+`, `^a BAD`}},
		{name: "authenticate unknown mechanism", send: []string{"a AUTHENTICATE CRAM-MD5"}, want: []string{`^a NO`}},
		{name: "wrong password", send: []string{"a LOGIN " + testUser + " nope"}, want: []string{`^a NO \[AUTHENTICATIONFAILED\]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rc *rawConn
			if tt.login {
				rc = h.rawLogin(t)
			} else {
				rc = h.raw(t)
			}
			if tt.select_ {
				rc.ok("s0", "SELECT INBOX")
			}
			for _, s := range tt.send {
				rc.send(s)
			}
			for _, w := range tt.want {
				l, ok := rc.line()
				if !ok {
					t.Fatalf("connection closed, want %s", w)
				}
				if !regexp.MustCompile(w).MatchString(l) {
					t.Fatalf("got %q, want %s", l, w)
				}
			}
			if tt.closed {
				if lines, closed := rc.closed(); !closed {
					t.Errorf("connection left open (then %q)", lines)
				}
				return
			}
			if _, tagged := rc.cmd("n", "NOOP"); !strings.HasPrefix(tagged, "n OK") && !(tt.login == false && strings.HasPrefix(tagged, "n OK")) {
				t.Errorf("connection unusable afterwards: %q", tagged)
			}
		})
	}
	// Nothing above reached the store, and the server still serves.
	if msgs, _ := h.store.Messages(testUser, "INBOX"); len(msgs) != 1 {
		t.Errorf("INBOX has %d messages, want 1", len(msgs))
	}
	if _, err := h.store.Mailbox(testUser, "Sent"); err != nil {
		t.Errorf("Sent: %v (data after a refused literal was run as commands?)", err)
	}
	h.rawLogin(t).ok("n", "NOOP")
}

// TestUnterminatedLiteral: a client that announces a literal and goes away
// midway stores nothing.
func TestUnterminatedLiteral(t *testing.T) {
	h := newHarness(t, nil)
	rc := h.rawLogin(t)
	rc.send("a APPEND INBOX {100+}")
	rc.send("only part of it")
	rc.conn.(*net.TCPConn).CloseWrite()
	if _, closed := rc.closed(); !closed {
		t.Error("connection left open")
	}
	if n, _, _ := h.store.Usage(testUser); n != 0 {
		t.Errorf("%d messages stored from a cut literal", n)
	}
}

// TestIdleTimeout: a silent authenticated client is logged out with BYE.
func TestIdleTimeout(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Timeout = 200 * time.Millisecond })
	rc := h.rawLogin(t)
	lines, closed := rc.closed()
	if !closed || !anyMatch(`^\* BYE .*idle`, lines) {
		t.Errorf("after the timeout: %q, closed %v", lines, closed)
	}
}

// TestConnectionLimit: connections over the limit get BYE [UNAVAILABLE];
// a freed slot is reused.
func TestConnectionLimit(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxConnections = 1 })
	first := h.raw(t)
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	second := &rawConn{t: t, conn: c, r: newReader(c)}
	lines, closed := second.closed()
	if !closed || !anyMatch(`^\* BYE \[UNAVAILABLE\]`, lines) {
		t.Errorf("second connection: %q, closed %v", lines, closed)
	}
	if got := counterValue(t, h.m.refused, "imap"); got != 1 {
		t.Errorf("refused metric %v", got)
	}
	first.cmd("l", "LOGOUT")
	first.closed()
	h.waitSlotFreed(t)
}

// waitSlotFreed dials until a session is greeted again. A connection slot
// is released when the server has closed its side: retry until then,
// bounded.
func (h *harness) waitSlotFreed(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		rc := &rawConn{t: t, conn: c, r: newReader(c)}
		l, _ := rc.line()
		c.Close()
		if strings.HasPrefix(l, "* OK") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot never freed: %q", l)
		}
	}
}

// TestShutdown ends sessions with BYE and returns promptly.
func TestShutdown(t *testing.T) {
	h := newHarness(t, nil)
	rc := h.rawLogin(t)
	rc.ok("s", "SELECT INBOX")
	rc.send("i IDLE")
	if l, _ := rc.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	lines, closed := rc.closed()
	if !closed || !anyMatch(`^\* BYE`, lines) {
		t.Errorf("session at shutdown: %q, closed %v", lines, closed)
	}
	if _, err := net.Dial("tcp", h.addr); err == nil {
		t.Error("still accepting after shutdown")
	}
}
