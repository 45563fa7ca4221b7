package e2e

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// TestLimitsPerIP: --max-connections-per-ip applies to every mail
// listener, loopback included: the connection past it is answered in each
// protocol's words and closed, and the node goes on serving.
func TestLimitsPerIP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real process")
	}
	t.Parallel()
	p := freePorts(t, 2)
	imap, pop3 := addr(p[0]), addr(p[1])
	n := newCluster(t, 1, "--max-connections-per-ip", "2", "--imap-addr", imap, "--pop3-addr", pop3, "--insecure-auth").nodes[0]
	for _, tc := range []struct {
		proto, addr, greeting, refusal string
	}{
		{"smtp", n.smtp, "220 ", "421 4.7.0 "},
		{"imap", imap, "* OK", "* BYE [UNAVAILABLE] Too many connections from your address"},
		{"pop3", pop3, "+OK", "-ERR [SYS/TEMP] Too many connections from your address"},
	} {
		t.Run(tc.proto, func(t *testing.T) {
			line := func(c net.Conn, r *bufio.Reader) (string, error) {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				return r.ReadString('\n')
			}
			dial := func() (net.Conn, *bufio.Reader) {
				c, err := net.DialTimeout("tcp", tc.addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c, bufio.NewReader(c)
			}
			var held []net.Conn
			for i := 0; i < 2; i++ {
				c, r := dial()
				if l, err := line(c, r); err != nil || !strings.HasPrefix(l, tc.greeting) {
					t.Fatalf("connection %d: %q %v", i+1, l, err)
				}
				held = append(held, c)
			}
			c, r := dial()
			l, err := line(c, r)
			if err != nil || !strings.HasPrefix(l, tc.refusal) || !strings.Contains(l, "from your address") {
				t.Fatalf("third connection: %q %v, want %q ... from your address", l, err, tc.refusal)
			}
			if l, err := line(c, r); err == nil {
				t.Fatalf("third connection still open: %q", l)
			}
			// Once one closes, a new connection is served.
			held[0].Close()
			deadline := time.Now().Add(10 * time.Second)
			for {
				c, r := dial()
				l, _ := line(c, r)
				c.Close()
				if strings.HasPrefix(l, tc.greeting) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no slot freed: %q", l)
				}
				time.Sleep(50 * time.Millisecond) // the server frees it when it sees the close
			}
		})
	}
}
