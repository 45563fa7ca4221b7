package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"regexp"
	"testing"
	"time"
)

// replyLine is what every line the server sends must look like.
var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9][ -][^\r\n]*$`)

// FuzzSMTPSession throws arbitrary bytes at a real listener as one
// client's whole input (commands, pipelining, DATA, BDAT, garbage), then
// half-closes. Whatever the input: the session ends (no hang), every line
// sent back is a well-formed reply, no command panics (go-smtp would
// answer "Internal server error"), and every message queued has CRLF line
// ends only, so nothing smuggled can be queued.
func FuzzSMTPSession(f *testing.F) {
	for _, s := range []string{
		"EHLO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nx\n.\nMAIL FROM:<e@c.test>\r\nRCPT TO:<u@example.test>\r\nDATA\r\ny\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<u@example.test>\r\nBDAT 5 LAST\r\nab\r\nc",
		"EHLO c\r\nMAIL FROM:<a@c.test> SIZE=99999999999 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<u@example.test> NOTIFY=NEVER\r\n",
		"HELO\r\nNOOP\r\nRSET\r\nVRFY x\r\nHELP\r\nSTARTTLS\r\n",
		"\x00\xff\r\n\r\n\n\r",
		"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\n--a--\r\n.\r\n",
	} {
		f.Add([]byte(s))
	}
	ts := startServer(f, func(c *Config) { c.MaxMessageBytes, c.MaxRecipients, c.MaxLineLength = 4096, 3, 200 })
	f.Fuzz(func(t *testing.T, in []byte) {
		before := len(ts.router.messages())
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		go func() {
			_, _ = c.Write(in)
			_ = c.(*net.TCPConn).CloseWrite()
		}()
		out, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("session did not end; got %q", out)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := bytes.TrimSuffix(sc.Bytes(), []byte{'\r'})
			if !replyLine.Match(line) {
				t.Fatalf("malformed reply line %q in %q", line, out)
			}
			if bytes.Contains(line, []byte("Internal server error")) {
				t.Fatalf("a command panicked: %q", out)
			}
		}
		for _, m := range ts.router.messages()[before:] {
			for i, b := range m {
				if b == '\n' && (i == 0 || m[i-1] != '\r') || b == '\r' && (i == len(m)-1 || m[i+1] != '\n') {
					t.Fatalf("queued a message with a bare CR or LF at %d: %q", i, m)
				}
			}
		}
	})
}
