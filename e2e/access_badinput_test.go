package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Bad input on the IMAP and POP3 listeners of a node that does not own the
// mailbox (design promise 5), lightly: imapd and pop3d test the cases in
// depth; here they go through a real node whose store is the owner's, over
// the cluster port. Each case gets a clear protocol error, then the
// connection either still works or is closed on purpose, the mailbox is
// unchanged and the node keeps serving others.

// badCase is one exchange on a fresh connection.
type badCase struct {
	name   string
	tls    bool     // implicit TLS (needed to log in)
	login  bool     // log in (and for IMAP select INBOX) first
	send   []string // written in order, each followed by CRLF unless it ends in one already
	want   []string // regexps matched by successive reply lines
	closed bool     // the server then closes the connection
}

func (bc badCase) run(t *testing.T, addr string, imapProto bool) {
	t.Helper()
	c := dialText(t, addr, bc.tls)
	if imapProto {
		c.expect("* OK")
		if bc.login {
			if _, tagged := c.imap("l", "LOGIN "+imapQuote(acUser)+" "+imapQuote(acPass)); !strings.HasPrefix(tagged, "l OK") {
				t.Fatalf("LOGIN: %s", tagged)
			}
			if _, tagged := c.imap("s", "SELECT INBOX"); !strings.HasPrefix(tagged, "s OK") {
				t.Fatalf("SELECT: %s", tagged)
			}
		}
	} else {
		c.expect("+OK")
		if bc.login {
			c.send("USER " + acUser + "\r\n")
			c.expect("+OK")
			c.send("PASS " + acPass + "\r\n")
			c.expect("+OK")
		}
	}
	for _, s := range bc.send {
		if !strings.HasSuffix(s, "\n") {
			s += "\r\n"
		}
		c.send(s)
	}
	for _, w := range bc.want {
		l, err := c.line(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for %s: %v", w, err)
		}
		if !regexp.MustCompile(w).MatchString(l) {
			t.Fatalf("got %q, want %s", l, w)
		}
	}
	if bc.closed {
		c.closed(10 * time.Second)
		return
	}
	if imapProto {
		if _, tagged := c.imap("n", "NOOP"); !strings.HasPrefix(tagged, "n OK") {
			t.Fatalf("connection unusable afterwards: %q", tagged)
		}
		return
	}
	c.send("NOOP\r\n")
	c.expect(map[bool]string{true: "+OK", false: "-ERR"}[bc.login]) // NOOP is a TRANSACTION command
}

func TestAccessBadInput(t *testing.T) {
	c := newAccessCluster(t, 0)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	c.deliver(n3, 1, "keep")
	long := strings.Repeat("x", 60<<10)

	imapCases := []badCase{
		{name: "garbage before login", send: []string{"\x16\x03\x01\x00\xff garbage"}, want: []string{`^\* BAD`, `^\* BYE`}, closed: true},
		{name: "select before login", send: []string{"a SELECT INBOX"}, want: []string{`^a BAD`}},
		{name: "fetch before login", send: []string{"a FETCH 1 BODY[]"}, want: []string{`^a BAD`}},
		{name: "login in clear text", send: []string{"a LOGIN " + imapQuote(acUser) + " " + imapQuote(acPass)}, want: []string{`^a (NO|BAD)`}},
		{name: "huge literal before login", send: []string{"a LOGIN {999999999}"}, want: []string{`^a (NO|BAD) \[TOOBIG\]`}},
		{name: "huge non-sync literal before login", send: []string{"a LOGIN {999999999+}", "b NOOP"}, want: []string{`^a (NO|BAD) \[TOOBIG\]`, `^\* BYE`}, closed: true},
		{name: "garbage after login", tls: true, login: true, send: []string{"\x00\xff\xfe"}, want: []string{`^\* BAD`}},
		{name: "unknown command", tls: true, login: true, send: []string{"a FROB x"}, want: []string{`^a BAD`}},
		{name: "fetch nothing selected", tls: true, send: []string{"l LOGIN " + imapQuote(acUser) + " " + imapQuote(acPass), "a FETCH 1 BODY[]"},
			want: []string{`^l OK`, `^a BAD`}},
		{name: "login twice", tls: true, login: true, send: []string{"a LOGIN x y"}, want: []string{`^a BAD`}},
		{name: "starttls over tls", tls: true, login: true, send: []string{"a STARTTLS"}, want: []string{`^a (NO|BAD)`}},
		{name: "bad sequence set", tls: true, login: true, send: []string{"a FETCH 0:x FLAGS"}, want: []string{`^a BAD`}},
		{name: "huge append literal", tls: true, login: true, send: []string{"a APPEND INBOX {999999999}"}, want: []string{`^a NO \[TOOBIG\]`}},
		{name: "huge non-sync append literal", tls: true, login: true, send: []string{"a APPEND INBOX {999999999+}", "b DELETE Sent"},
			want: []string{`^a NO \[TOOBIG\]`, `^\* BYE`}, closed: true},
		{name: "command line too long", tls: true, login: true, send: []string{"a NOOP " + long}, want: []string{`^(a|\*) BAD \[TOOBIG\]`, `^\* BYE`}, closed: true},
		{name: "idle ended by garbage", tls: true, login: true, send: []string{"i IDLE", "NOT DONE"}, want: []string{`^\+ `, `^i BAD`}},
	}
	popCases := []badCase{
		{name: "garbage", send: []string{"\x16\x03\x01\x00\xff"}, want: []string{`^-ERR`}},
		{name: "http", send: []string{"GET / HTTP/1.1"}, want: []string{`^-ERR`}},
		{name: "transaction commands before login", send: []string{"STAT", "RETR 1", "DELE 1"}, want: []string{`^-ERR`, `^-ERR`, `^-ERR`}},
		{name: "pass without user", send: []string{"PASS x"}, want: []string{`^-ERR`}},
		{name: "password in clear text", send: []string{"USER " + acUser, "PASS " + acPass}, want: []string{`^-ERR`, `^-ERR`}},
		{name: "line too long", tls: true, send: []string{"USER " + strings.Repeat("a", 600), "USER " + acUser}, want: []string{`^-ERR`, `^\+OK`}},
		{name: "endless line", send: []string{long}, want: []string{`^-ERR`}, closed: true},
		{name: "too many bad commands", send: strings.Split(strings.Repeat("XXXX ", 10), " ")[:10], want: strings.Split(strings.Repeat("^-ERR ", 10), " ")[:10], closed: true},
		{name: "auth bad base64", tls: true, send: []string{"AUTH PLAIN !!!"}, want: []string{`^-ERR`}},
		{name: "wrong state after login", tls: true, login: true, send: []string{"USER x", "PASS y", "AUTH PLAIN", "STLS"}, want: []string{`^-ERR`, `^-ERR`, `^-ERR`, `^-ERR`}},
		{name: "bad message numbers", tls: true, login: true, send: []string{"RETR 2", "DELE 0", "RETR x", "TOP 1", "LIST 1 2", "UIDL 99999999999999"},
			want: []string{`^-ERR`, `^-ERR`, `^-ERR`, `^-ERR`, `^-ERR`, `^-ERR`}},
	}
	// Both non-owners, both protocols.
	for _, nd := range []*accessNode{n2, n3} {
		for _, bc := range imapCases {
			t.Run(nd.name+"/imap/"+bc.name, func(t *testing.T) {
				addr := nd.imap
				if bc.tls {
					addr = nd.imaps
				}
				bc.run(t, addr, true)
			})
		}
		for _, bc := range popCases {
			t.Run(nd.name+"/pop3/"+bc.name, func(t *testing.T) {
				addr := nd.pop3
				if bc.tls {
					addr = nd.pop3s
				}
				bc.run(t, addr, false)
			})
		}
	}

	// Clients that go away mid-way, while others are served: an IMAP APPEND
	// literal cut short, a POP3 DELE never followed by QUIT, a POP3 line
	// without its end.
	cut := dialText(t, n2.imaps, true)
	cut.expect("* OK")
	if _, tagged := cut.imap("l", "LOGIN "+imapQuote(acUser)+" "+imapQuote(acPass)); !strings.HasPrefix(tagged, "l OK") {
		t.Fatalf("LOGIN: %s", tagged)
	}
	cut.send("a APPEND INBOX {300}\r\n")
	cut.expect("+ ")
	cut.send("Subject: cut\r\n\r\nonly part of it")
	dropped := dialText(t, n2.pop3s, true)
	dropped.expect("+OK")
	dropped.send("USER " + acUser + "\r\nPASS " + acPass + "\r\n")
	dropped.expect("+OK")
	dropped.expect("+OK maildrop has 1 messages")
	dropped.send("DELE 1\r\n")
	dropped.expect("+OK")
	partial := dialText(t, n2.pop3, false)
	partial.expect("+OK")
	partial.send("USER half-a-li")

	// Meanwhile a well-behaved client on the same node reads the mail.
	gc := imapLogin(t, n2.imap, nil)
	if sel, err := gc.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != 1 {
		t.Fatalf("SELECT on n2 during the cut sessions: %v %v", sel, err)
	}
	if b := imapBody(t, gc, 1); !strings.Contains(b, "Subject: keep\r\n") {
		t.Fatalf("message on n2:\n%s", b)
	}
	cut.c.Close()
	dropped.c.Close()
	partial.c.Close()
	// Once n2 has ended those sessions (and gc's), whatever they could
	// have done is done.
	gc.Close()
	m := &mx{n: n2.node}
	waitFor(t, 15*time.Second, "n2's sessions to end", func() error {
		for _, series := range []string{`clustermail_imap_connections{listener="imap"}`, `clustermail_imap_connections{listener="imaps"}`,
			`clustermail_pop3_connections{listener="pop3"}`, `clustermail_pop3_connections{listener="pop3s"}`} {
			if v, err := m.metricErr(series); err != nil || v != 0 {
				return fmt.Errorf("%s = %v (%v)", series, v, err)
			}
		}
		return nil
	})

	// Nothing above changed the mailbox: one message, not deleted, no cut
	// APPEND, and Sent (which a refused literal's data would have deleted)
	// still there.
	for _, nd := range c.nodes {
		gc := imapLogin(t, nd.imap, nil)
		v := imapView(t, gc, "INBOX")
		if len(v.UIDs) != 1 || len(v.Flags[v.UIDs[0]]) != 0 {
			t.Fatalf("%s: INBOX %v, want the one message, unflagged", nd.name, v)
		}
		st, err := gc.Status("Sent", &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || *st.NumMessages != 0 {
			t.Fatalf("%s: STATUS Sent: %v %v", nd.name, st, err)
		}
	}
	if st, err := n1.client().MailboxStats(ctx(t), acUser); err != nil || st.Messages != 1 {
		t.Fatalf("mailbox stats: %+v %v", st, err)
	}
	for _, nd := range c.nodes {
		nd.mu.Lock()
		done := nd.done
		nd.mu.Unlock()
		select {
		case <-done:
			t.Fatalf("%s exited", nd.name)
		default:
		}
	}

	t.Run("slow client", func(t *testing.T) {
		t.Skip("no flag sets the IMAP or POP3 idle timeout (imapd and pop3d Config.Timeout keep their defaults, 30 and 10 minutes); the packages' unit tests cover it")
	})
}
