package imapd

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzIMAPSession feeds arbitrary bytes to a logged-in session with INBOX
// selected: the command parser (go-imap's and the patched CONDSTORE and
// QUOTA parts) and every session method behind it. The server must answer
// and close the connection once the input ends, and never panic. (Not
// named FuzzSession: the Makefile finds fuzz targets by name across
// packages, and pop3d has one.)
func FuzzIMAPSession(f *testing.F) {
	h := newHarness(f, func(c *Config) { c.Timeout = 5 * time.Second })
	h.deliver(f, testUser, plainMsg)
	h.deliver(f, testUser, multipartMsg)
	for _, seed := range []string{
		"a FETCH 1:* (UID FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[1.MIME]<0.10> BINARY[2] MODSEQ) (CHANGEDSINCE 1)",
		"a UID STORE 1:* (UNCHANGEDSINCE 5) +FLAGS.SILENT (\\Seen $x)",
		"a SEARCH RETURN (MIN SAVE) OR (MODSEQ \"/flags/\\\\Seen\" all 3) NOT BODY {3+}\r\nfoo",
		"a SELECT INBOX (CONDSTORE)\r\nb STATUS INBOX (HIGHESTMODSEQ DELETED-STORAGE)",
		"a GETQUOTAROOT INBOX\r\nb GETQUOTA \"\"",
		"a APPEND INBOX (\\Seen) \" 1-Jan-2024 00:00:00 +0000\" {5+}\r\nhello",
		"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"*\" \"%\") RETURN (CHILDREN STATUS (MESSAGES SIZE))",
		"a IDLE\r\nDONE\r\nb MOVE $ Trash",
		"a CREATE x/y (USE (\\Junk))\r\nb RENAME x z\r\nc DELETE z/y",
		"a COPY 1:* Archive\r\nb EXPUNGE\r\nc UID EXPUNGE 1:*\r\nd CLOSE",
		"a ENABLE CONDSTORE IMAP4rev2\r\nb NAMESPACE\r\nc UNSELECT",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		script := "l LOGIN " + testUser + " " + testPass + "\r\ns SELECT INBOX\r\n" + string(input) + "\r\nz LOGOUT\r\n"
		go func() {
			_, _ = c.Write([]byte(script))
			c.(*net.TCPConn).CloseWrite()
		}()
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("server did not finish: %v", err)
		}
		if strings.Contains(h.logs.String(), "panic") {
			t.Fatalf("server panicked on %q:\n%s", input, h.logs.String())
		}
	})
}
