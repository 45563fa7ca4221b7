package imapd

import (
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"clustermail/throttle"
)

// TestConnectionsPerIP: past the per-address limit a client gets BYE and
// is disconnected; a freed slot is reused.
func TestConnectionsPerIP(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxConnectionsPerIP = 2 })
	first := h.raw(t)
	h.raw(t)
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	third := &rawConn{t: t, conn: c, r: newReader(c)}
	lines, closed := third.closed()
	if !closed || !anyMatch(`^\* BYE \[UNAVAILABLE\] Too many connections from your address`, lines) {
		t.Errorf("third connection: %q, closed %v", lines, closed)
	}
	first.cmd("l", "LOGOUT")
	first.closed()
	h.waitSlotFreed(t)
}

// TestLoginLockout: a locked-out account or address gets NO [UNAVAILABLE]
// even with the right password.
func TestLoginLockout(t *testing.T) {
	h := newHarness(t, nil)
	for _, key := range []string{"user:" + testUser, "ip:127.0.0.1"} {
		for i := 0; i < throttle.DefaultLockout; i++ {
			h.limiter.Fail(key)
		}
		rc := h.raw(t)
		_, tagged := rc.cmd("l", "LOGIN "+testUser+" "+testPass)
		if !strings.HasPrefix(tagged, "l NO [UNAVAILABLE]") {
			t.Errorf("%s locked out: %q", key, tagged)
		}
		h.limiter.Succeed(key)
	}
	h.rawLogin(t)
}

// TestBadBytes: NUL, bare CR and LF, invalid UTF-8 and a 10 MB line each
// get a protocol error (or a BYE and a close), never a crash, and the
// server goes on serving.
func TestBadBytes(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct {
		name string
		raw  string // written as is
		want string // regexp for the first line of the answer
	}{
		{"NUL in a command", "a NO\x00OP\r\n", `^(a|\*) BAD`},
		{"NUL in a quoted string", "a SELECT \"IN\x00BOX\"\r\n", `^a (BAD|NO)`},
		{"bare CR inside a command", "a NOOP\rb LOGOUT\r\n", `^(a|\*) (BAD|OK)`},
		{"bare LF line end", "a NOOP\n", `^a (OK|BAD)`},
		{"invalid UTF-8 mailbox name", "a SELECT \"\xff\xfe\"\r\n", `^a (BAD|NO)`},
		{"invalid UTF-8 in a literal name", "a CREATE {2+}\r\n\xc3\x28\r\n", `^a (BAD|NO)`},
		{"10 MB line", "a NOOP " + strings.Repeat("x", 10<<20) + "\r\n", `^(a|\*) BAD \[TOOBIG\]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := h.rawLogin(t)
			go func() {
				_ = rc.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
				_, _ = rc.conn.Write([]byte(tc.raw))
			}()
			l, ok := rc.line()
			if !ok || !regexp.MustCompile(tc.want).MatchString(l) {
				t.Fatalf("got %q (open %v), want %s", l, ok, tc.want)
			}
			h.rawLogin(t).ok("n", "NOOP")
		})
	}
}
