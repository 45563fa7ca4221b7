package smtpd

import (
	"bytes"
	"strings"
	"testing"
)

// TestSmugglingNothingQueued: whatever bare CR or LF tries to end the data
// with, no second message is ever queued, and the session goes on. With
// the fake router every message accepted is seen, so "nothing smuggled"
// is checked directly, not inferred from the replies.
func TestSmugglingNothingQueued(t *testing.T) {
	ts := startServer(t, nil)
	smuggled := "MAIL FROM:<evil@client.test>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nSubject: SMUGGLED\r\n\r\nx\r\n.\r\n"
	head := "From: a@client.test\r\nSubject: legit\r\n\r\nbody"
	for _, end := range []string{"\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r\n", "\r.\r", "\n\n.\n\n", "\r\n.\r", "\r\n\x00.\r\n", "\n.\x00\r\n"} {
		t.Run(strings.NewReplacer("\r", `\r`, "\n", `\n`, "\x00", `\0`).Replace(end), func(t *testing.T) {
			before := len(ts.router.messages())
			c := ts.greeted(t)
			c.cmd("EHLO client.test", 250, "")
			c.cmd("MAIL FROM:<a@client.test>", 250, "")
			c.cmd("RCPT TO:<u@example.test>", 250, "")
			c.cmd("DATA", 354, "")
			// The smuggled message's end is the real end of the data.
			c.write(head + end + smuggled)
			r, err := c.read()
			if err != nil {
				t.Fatal(err)
			}
			c.cmd("NOOP", 250, "2.0.0") // exactly one reply for all of it
			c.cmd("QUIT", 221, "")
			msgs := ts.router.messages()[before:]
			for _, m := range msgs {
				if bytes.Contains(m, []byte("\nSubject: SMUGGLED")) && !bytes.Contains(m, []byte("Subject: legit")) {
					t.Fatalf("smuggled message queued on its own: %q", m)
				}
			}
			switch {
			case r.code == 554 && r.enh == "5.6.0" && len(msgs) == 0:
			case r.code == 250 && len(msgs) == 1:
				// go-smtp drops ".\r" at the start of a line with no LF
				// after it, and NUL is passed through: the whole input
				// is one message, the "smuggled" lines are its body.
				t.Logf("taken as one message: %d %s", r.code, r.text)
			default:
				t.Fatalf("got %d %s %s with %d messages queued", r.code, r.enh, r.text, len(msgs))
			}
		})
	}
}

// TestBadInputKeepsServing: each bad input gets a clear reply, and the
// listener serves the next client.
func TestBadInputKeepsServing(t *testing.T) {
	ts := startServer(t, nil)
	huge := strings.Repeat("a", 10<<20)
	for _, tc := range []struct {
		name   string
		run    func(c *client)
		closed bool // the server hangs up after the reply
	}{
		{name: "10 MB command line", closed: true, run: func(c *client) {
			go func() { _, _ = c.c.Write([]byte("NOOP " + huge + "\r\n")) }()
			c.expect(500, "5.5.2")
		}},
		{name: "10 MB line in DATA", closed: true, run: func(c *client) {
			c.cmd("EHLO client.test", 250, "")
			c.cmd("MAIL FROM:<a@client.test>", 250, "")
			c.cmd("RCPT TO:<u@example.test>", 250, "")
			c.cmd("DATA", 354, "")
			go func() { _, _ = c.c.Write([]byte("Subject: x\r\n\r\n" + huge + "\r\n.\r\n")) }()
			c.expect(500, "5.5.2")
		}},
		{name: "NUL in commands", run: func(c *client) {
			c.cmd("EHLO client.test", 250, "")
			c.cmd("MAIL FROM:<a\x00b@client.test>", 553, "5.1.7")
			c.cmd("MAIL FROM:<a@client.test>", 250, "")
			c.cmd("RCPT TO:<u\x00@example.test>", 553, "5.1.3")
			c.cmd("\x00\x00\x00\x00", 500, "")
		}},
		{name: "invalid UTF-8 address without SMTPUTF8", run: func(c *client) {
			c.cmd("EHLO client.test", 250, "")
			c.cmd("MAIL FROM:<\xff\xfe@client.test>", 553, "5.1.7")
			c.cmd("MAIL FROM:<a@client.test>", 250, "")
			c.cmd("RCPT TO:<\xc3\x28@example.test>", 501, "5.5.2") // go-smtp's parser
			c.cmd("RCPT TO:<u\x01@example.test>", 553, "5.1.3")
		}},
		{name: "invalid UTF-8 address with SMTPUTF8", run: func(c *client) {
			c.cmd("EHLO client.test", 250, "")
			c.cmd("MAIL FROM:<\xff\xfe@client.test> SMTPUTF8", 553, "5.1.7")
			c.cmd("MAIL FROM:<a@client.test> SMTPUTF8", 250, "")
			c.cmd("RCPT TO:<\xc3\x28@example.test>", 501, "5.5.2") // go-smtp's parser
			c.cmd("RCPT TO:<u\x01@example.test>", 553, "5.1.3")
		}},
		{name: "too many hops", run: func(c *client) {
			c.cmd("EHLO client.test", 250, "")
			r := c.send("a@client.test", "u@example.test", message(repeat("Received: from h%d by x; Mon, 1 Jan 2024 00:00:00 +0000", 100)...)+".\r\n")
			if r.code != 554 || r.enh != "5.4.6" {
				c.t.Fatalf("100 Received (101 with ours): got %v, want 554 5.4.6", r)
			}
			r = c.send("a@client.test", "u@example.test", message(repeat("Received: from h%d by x; Mon, 1 Jan 2024 00:00:00 +0000", 99)...)+".\r\n")
			if r.code != 250 {
				c.t.Fatalf("99 Received: got %v, want 250", r)
			}
		}},
		{name: "header section too large", run: func(c *client) {
			c.cmd("EHLO client.test", 250, "")
			r := c.send("a@client.test", "u@example.test", message(repeat("X-F%d: v", 1000)...)+".\r\n")
			if r.code != 552 || r.enh != "5.3.4" {
				c.t.Fatalf("got %v, want 552 5.3.4", r)
			}
		}},
		{name: "MIME nested too deep", run: func(c *client) {
			c.cmd("EHLO client.test", 250, "")
			r := c.send("a@client.test", "u@example.test", nested(60)+".\r\n")
			if r.code != 554 || r.enh != "5.6.0" {
				c.t.Fatalf("got %v, want 554 5.6.0", r)
			}
		}},
		{name: "pipelined flood of MAIL and RSET", run: func(c *client) {
			c.cmd("EHLO client.test", 250, "")
			c.write(strings.Repeat("MAIL FROM:<a@client.test>\r\nRSET\r\n", 300))
			for i := 0; i < 600; i++ {
				c.expect(250, "")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.greeted(t)
			tc.run(c)
			if tc.closed {
				c.expectClosed()
			} else {
				c.cmd("QUIT", 221, "")
			}
			// And the listener still serves.
			n := ts.greeted(t)
			n.cmd("EHLO client.test", 250, "")
			n.cmd("QUIT", 221, "")
		})
	}
}
