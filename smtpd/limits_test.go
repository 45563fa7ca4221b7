package smtpd

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"clustermail/throttle"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// message builds a message with extra header lines before the body.
func message(header ...string) string {
	h := strings.Join(header, "\r\n")
	if h != "" {
		h += "\r\n"
	}
	return h + "From: a@example.test\r\nSubject: test\r\n\r\nbody\r\n"
}

func repeat(line string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(line, i)
	}
	return out
}

// nested is a message of depth multipart entities, one inside the other.
func nested(depth int) string {
	var b strings.Builder
	b.WriteString("From: a@example.test\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\npreamble\r\n")
	for i := 1; i < depth; i++ {
		fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed;\r\n boundary=b%d\r\n\r\n", i-1, i)
	}
	fmt.Fprintf(&b, "--b%d\r\nContent-Type: text/plain\r\n\r\nleaf\r\n", depth-1)
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.String()
}

// encapsulatedMessages is a message of depth messages, each inside the one before.
func encapsulatedMessages(depth int) string {
	return "From: a@example.test\r\n" + strings.Repeat("Content-Type: message/rfc822\r\n\r\n", depth) + "Subject: x\r\n\r\nbody\r\n"
}

func TestMIMEDepth(t *testing.T) {
	mixed := "--top\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/alternative;\r\n\tboundary=\"in\"\r\n\r\n" +
		"--in\r\nContent-Type: text/plain\r\n\r\nx\r\n--in--\r\n--top\r\n\r\nsecond part\r\n--top--\r\n"
	for _, tc := range []struct {
		name, ctype, body string
		want              int
	}{
		{"text", "text/plain", "--x\r\n", 0},
		{"no content type", "", "body\r\n", 0},
		{"multipart", "multipart/mixed; boundary=top", "--top\r\n\r\nx\r\n--top--\r\n", 1},
		{"message in multipart with multipart", "multipart/mixed; boundary=top", mixed, 3},
		{"after the close, siblings", "multipart/mixed; boundary=top", mixed + mixed, 3},
		{"boundary of a closed level ignored", "multipart/mixed; boundary=top", "--top--\r\n--top\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n", 1},
		{"top level message", "message/rfc822", "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\n--a--\r\n", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mimeDepth([]byte(tc.body), []byte(tc.ctype)); got != tc.want {
				t.Fatalf("depth %d, want %d", got, tc.want)
			}
		})
	}
}

func TestCheckHeaders(t *testing.T) {
	wide := nested(3)
	// Siblings do not add up: three parts side by side, each multipart.
	siblings := "Content-Type: multipart/mixed; boundary=top\r\n\r\n" +
		strings.Repeat("--top\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n--in\r\n\r\nx\r\n--in--\r\n", 60) + "--top--\r\n"
	for _, tc := range []struct {
		name string
		msg  string
		want error
	}{
		{"plain", message(), nil},
		{"100 Received", message(repeat("Received: from h%d by x; Mon, 1 Jan 2024 00:00:00 +0000", 100)...), nil},
		{"101 Received", message(repeat("Received: from h%d by x; Mon, 1 Jan 2024 00:00:00 +0000", 101)...), errTooManyHops},
		{"101 Received, odd case and folded", message(repeat("rECEIVED : from h%d\r\n\tby x; Mon, 1 Jan 2024 00:00:00 +0000", 101)...), errTooManyHops},
		{"Received in the body do not count", message() + strings.Repeat("Received: from x\r\n", 200), nil},
		{"X-Received does not count", message(repeat("X-Received: %d", 200)...), nil},
		{"1000 fields", message(repeat("X-F%d: v", 998)...), nil},
		{"1001 fields", message(repeat("X-F%d: v", 999)...), errHeaderTooBig},
		{"header over 1 MB", message("X-Big: " + strings.Repeat("a", 900) + strings.Repeat("\r\n "+strings.Repeat("a", 900), 1200)), errHeaderTooBig},
		{"body over 1 MB", message() + strings.Repeat(strings.Repeat("a", 900)+"\r\n", 1200), nil},
		{"header without a body", "Subject: x\r\n", nil},
		{"empty", "", nil},
		{"MIME depth 3", wide, nil},
		{"MIME depth 50", nested(50), nil},
		{"MIME depth 51", nested(51), errMIMETooDeep},
		{"MIME siblings", siblings, nil},
		{"50 messages inside each other", encapsulatedMessages(50), nil},
		{"51 messages inside each other", encapsulatedMessages(51), errMIMETooDeep},
		{"MIME unclosed, deep", strings.Split(nested(60), "--b59--")[0], errMIMETooDeep},
		{"boundary not multipart", "Content-Type: text/plain; boundary=x\r\n\r\n--x\r\nContent-Type: multipart/mixed; boundary=y\r\n\r\n", nil},
		{"bad Content-Type", "Content-Type: multipart/mixed; boundary=\"\r\n\r\n--\r\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkHeaders([]byte(tc.msg)); !errors.Is(got, tc.want) {
				t.Fatalf("checkHeaders = %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzCheckHeaders(f *testing.F) {
	for _, s := range []string{message(), nested(4), nested(52), "Received: x\r\n\r\n", "Content-Type: multipart/x; boundary=a\r\n\r\n--a\r\n\r\n--a--\r\n",
		"a\r\n\r\n", "\r\n", ": \r\n x\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		err := checkHeaders(msg)
		var se *smtp.SMTPError
		if err != nil && !errors.As(err, &se) {
			t.Fatalf("not an SMTP error: %v", err)
		}
		if err != nil && se.Code < 500 {
			t.Fatalf("a refused message is refused for good: %v", err)
		}
	})
}

// TestConnectionsPerIP: past the limit a client gets 421 4.7.0, on the
// implicit TLS port inside TLS, and a slot freed is usable again.
func TestConnectionsPerIP(t *testing.T) {
	for _, implicit := range []bool{false, true} {
		t.Run(fmt.Sprintf("implicit TLS %v", implicit), func(t *testing.T) {
			ts := startServer(t, func(c *Config) { c.MaxConnectionsPerIP = 2; c.ImplicitTLS = implicit })
			a, _ := ts.greeted(t), ts.greeted(t)
			third := ts.dial(t, implicit)
			got := third.expectClosed()
			if len(got) != 1 || got[0].code != 421 || got[0].enh != "4.7.0" || !strings.Contains(got[0].text, "from your address") {
				t.Fatalf("third connection: got %v, want 421 4.7.0 ... from your address", got)
			}
			a.cmd("QUIT", 221, "")
			a.expectClosed()
			c := ts.greeted(t) // the slot is free once the server has closed
			c.cmd("EHLO client.test", 250, "")
		})
	}
}

// TestTooManyCommands: a flood without any message gets 421 and the
// connection closed, in clear text and inside TLS; an accepted message
// gives a fresh allowance.
func TestTooManyCommands(t *testing.T) {
	ts := startServer(t, nil)
	flood := func(c *client, n int) (noops int, rest []reply) {
		go func() { _, _ = c.c.Write([]byte(strings.Repeat("NOOP\r\n", n))) }()
		for {
			r, err := c.read()
			if err != nil {
				return noops, rest
			}
			if r.code == 250 && len(rest) == 0 {
				noops++
				continue
			}
			rest = append(rest, r)
		}
	}
	t.Run("clear text", func(t *testing.T) {
		c := ts.greeted(t)
		noops, rest := flood(c, maxCommands+500)
		if noops < maxCommands-10 || noops >= maxCommands+500 {
			t.Fatalf("%d NOOPs answered before the limit of %d", noops, maxCommands)
		}
		if len(rest) != 1 || rest[0].code != 421 || rest[0].enh != "4.7.0" || !strings.Contains(rest[0].text, "Too many commands") {
			t.Fatalf("after the NOOPs: %v, want one 421 4.7.0 Too many commands", rest)
		}
	})
	t.Run("inside TLS", func(t *testing.T) {
		c := ts.greeted(t)
		c.cmd("EHLO client.test", 250, "")
		c.starttls()
		// Checked between reads of the connection, and one TLS record
		// carries up to 16 KiB of commands: up to 2730 NOOPs.
		noops, rest := flood(c, 3*maxCommands)
		if noops < maxCommands-50 || noops >= 3*maxCommands {
			t.Fatalf("%d NOOPs answered before the limit of %d", noops, maxCommands)
		}
		if len(rest) != 1 || rest[0].code != 421 {
			t.Fatalf("after the NOOPs: %v, want one 421", rest)
		}
	})
	t.Run("an accepted message resets the count", func(t *testing.T) {
		c := ts.greeted(t)
		c.cmd("EHLO client.test", 250, "")
		for round := 0; round < 3; round++ {
			c.write(strings.Repeat("NOOP\r\n", maxCommands*2/3))
			for i := 0; i < maxCommands*2/3; i++ {
				c.expect(250, "2.0.0")
			}
			c.send("a@client.test", "u@example.test", message()+".\r\n")
		}
		c.cmd("QUIT", 221, "")
		if n := len(ts.router.messages()); n != 3 {
			t.Fatalf("%d messages accepted, want 3", n)
		}
	})
}

// TestTooManyMessages: the MAIL after maxMessagesPerSession messages gets
// 421 and the connection is closed; the messages before are queued.
func TestTooManyMessages(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.greeted(t)
	c.cmd("EHLO client.test", 250, "")
	for i := 0; i < maxMessagesPerSession; i++ {
		if r := c.send("a@client.test", "u@example.test", message()+".\r\n"); r.code != 250 {
			t.Fatalf("message %d: %d %s %s", i+1, r.code, r.enh, r.text)
		}
	}
	c.write("MAIL FROM:<a@client.test>\r\n")
	got := c.expectClosed()
	if len(got) != 1 || got[0].code != 421 || got[0].enh != "4.7.0" {
		t.Fatalf("MAIL past the limit: %v, want 421 4.7.0 and the connection closed", got)
	}
	if n := len(ts.router.messages()); n != maxMessagesPerSession {
		t.Fatalf("%d messages queued, want %d", n, maxMessagesPerSession)
	}
}

// TestSendRate: an account over its hourly rate gets 451 4.7.1 at MAIL,
// on every submission listener sharing the rate.
func TestSendRate(t *testing.T) {
	rate := throttle.NewRate(2)
	sub := func(c *Config) { c.Mode, c.InsecureAuth, c.SendRate = ModeSubmission, true, rate }
	ts1, ts2 := startServer(t, sub), startServer(t, sub)
	c := ts1.greeted(t)
	c.cmd("EHLO client.test", 250, "")
	c.cmd(plain(testUser, testPass), 235, "")
	for i := 0; i < 2; i++ {
		if r := c.send(testUser, "x@elsewhere.test", message()+".\r\n"); r.code != 250 {
			t.Fatalf("message %d: %v", i+1, r)
		}
	}
	c.cmd("MAIL FROM:<"+testUser+">", 451, "4.7.1")
	c.cmd("NOOP", 250, "") // the session goes on
	c2 := ts2.greeted(t)
	c2.cmd("EHLO client.test", 250, "")
	c2.cmd(plain(testUser, testPass), 235, "")
	c2.cmd("MAIL FROM:<"+testUser+">", 451, "4.7.1")
}

// TestAuthLockout: once an account or an address has failed too often,
// AUTH is refused with 454 4.7.0 even with the right password.
func TestAuthLockout(t *testing.T) {
	logins := throttle.New()
	ts := startServer(t, func(c *Config) { c.Mode, c.InsecureAuth, c.Logins = ModeSubmission, true, logins })
	for i := 0; i < throttle.DefaultLockout; i++ {
		logins.Fail("user:" + testUser)
	}
	c := ts.greeted(t)
	c.cmd("EHLO client.test", 250, "")
	c.cmd(plain(testUser, testPass), 454, "4.7.0")
	c.cmd("MAIL FROM:<"+testUser+">", 530, "5.7.0") // not authenticated
	logins.Succeed("user:" + testUser)
	for i := 0; i < throttle.DefaultLockout; i++ {
		logins.Fail("ip:127.0.0.1")
	}
	c.cmd(plain(testUser, testPass), 454, "4.7.0")
	logins.Succeed("ip:127.0.0.1")
	c.cmd(plain(testUser, testPass), 235, "")
}

// TestSTARTTLSDiscardsPipelined: commands sent after STARTTLS in the same
// packet, before the handshake, are never executed (CVE-2011-0411):
// go-smtp reads the TLS session through a new buffer.
func TestSTARTTLSDiscardsPipelined(t *testing.T) {
	ts := startServer(t, nil)
	for _, injected := range []string{"MAIL FROM:<a@client.test>\r\n", "MAIL FROM:<a@client.test>\r\nRCPT TO:<u@example.test>\r\n", "RSET\r\n"} {
		c := ts.greeted(t)
		c.cmd("EHLO client.test", 250, "")
		c.write("STARTTLS\r\n" + injected)
		c.expect(220, "")
		c.handshake()
		tc := c
		// The first reply inside TLS answers EHLO: nothing injected got one.
		r := tc.cmd("EHLO client.test", 250, "")
		if !strings.HasPrefix(r.text, "Hello client.test") {
			t.Fatalf("first reply inside TLS is not EHLO's: %v", r)
		}
		// And the injected MAIL did not open a transaction.
		r = tc.cmd("RCPT TO:<u@example.test>", 502, "")
		if !strings.Contains(r.text, "MAIL") {
			t.Fatalf("RCPT after injected MAIL: %v", r)
		}
		tc.send("a@client.test", "u@example.test", message()+".\r\n")
		tc.cmd("QUIT", 221, "")
	}
}
