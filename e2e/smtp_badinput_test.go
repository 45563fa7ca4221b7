package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"clustermail/api"
)

// Bad input on the inbound SMTP listener (design promise 5): every case
// gets the RFC's reply code, then the node is checked to have accepted,
// queued and delivered nothing it should not have, and to still take a
// normal message.

// The node under test runs with small limits so the cases are fast.
var mxFlags = []string{"--max-message-size", "64K", "--max-recipients", "5", "--smtp-timeout", "2s", "--max-connections", "20"}

const (
	mxTimeout  = 2 * time.Second // --smtp-timeout
	mxMaxConns = 20              // --max-connections
	mxMaxRcpts = 5               // --max-recipients
	mxLineMax  = 1000            // --max-line-length (default), CRLF included
	mxDomain   = "example.test"
	mxAccount  = "rcpt@example.test"
	mxSender   = "sender@client.test"
)

// mx is one real node with a hosted domain and one account, and the
// bookkeeping that proves a case left no trace.
type mx struct {
	n        *node
	maxSize  int            // SIZE advertised in EHLO
	accepted float64        // clustermail_messages_accepted_total expected now
	want     map[string]int // subject -> copies the account's mailbox holds
	controls int
}

func newMX(t *testing.T) *mx {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real process")
	}
	t.Parallel()
	n := newCluster(t, 1, mxFlags...).nodes[0]
	if _, err := n.client().AddDomain(ctx(t), mxDomain); err != nil {
		t.Fatal(err)
	}
	if _, err := n.client().AddUser(ctx(t), api.UserAddRequest{Address: mxAccount, Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	m := &mx{n: n, want: map[string]int{}}
	m.accepted = m.metric(t, "clustermail_messages_accepted_total")
	c := m.dial(t)
	ehlo := c.cmd("EHLO client.test", 250, "")
	for _, l := range strings.Split(ehlo.text, "\n") {
		if v, ok := strings.CutPrefix(l, "SIZE "); ok {
			m.maxSize, _ = strconv.Atoi(v)
		}
	}
	if m.maxSize != 64<<10 {
		t.Fatalf("EHLO advertises SIZE %d, want %d:\n%s", m.maxSize, 64<<10, ehlo.text)
	}
	if !strings.Contains(ehlo.text, "LIMITS RCPTMAX=5") || !strings.Contains(ehlo.text, "PIPELINING") {
		t.Fatalf("EHLO lacks PIPELINING or LIMITS RCPTMAX=5:\n%s", ehlo.text)
	}
	c.quit()
	return m
}

// metric reads one unlabelled series (or name{labels} exactly as exposed)
// from the node's /metrics.
func (m *mx) metric(t *testing.T, series string) float64 {
	t.Helper()
	v, err := m.metricErr(series)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var metricsClient = &http.Client{Timeout: 10 * time.Second}

func (m *mx) metricErr(series string) (float64, error) {
	resp, err := metricsClient.Get("http://" + m.n.api + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	// A series without labels stands for the sum over all its labels
	// (listeners, queue states).
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	sum, found := 0.0, false
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, series)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if rest[0] == '{' {
			i := strings.IndexByte(rest, '}')
			if i < 0 {
				continue
			}
			rest = rest[i+1:]
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return 0, err
		}
		sum, found = sum+v, true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("metric %s not exposed", series)
	}
	return sum, nil
}

// settle ends a case: once the node has finished every session of the
// case, nothing may have been accepted, queued or delivered beyond what
// the case declared, and a normal message must still get 250.
func (m *mx) settle(t *testing.T) {
	t.Helper()
	waitFor(t, 15*time.Second, "the case's SMTP sessions to end", func() error {
		if v, err := m.metricErr("clustermail_smtp_connections"); err != nil || v != 0 {
			return fmt.Errorf("%v SMTP connections open (%v)", v, err)
		}
		return nil
	})
	if err := m.check(); err != nil {
		t.Fatalf("after the case: %v", err)
	}
	m.controls++
	subj := fmt.Sprintf("control-%d", m.controls)
	code, text, err := send(m.n.smtp, mxSender, []string{mxAccount}, message(subj))
	if err != nil || code != 250 {
		t.Fatalf("node harmed: a normal message got %d %s %v", code, text, err)
	}
	m.delivered(t, subj)
}

// delivered records a message the case got 250 for and waits until it is
// in the mailbox and out of the queue, and nothing else is.
func (m *mx) delivered(t *testing.T, subject string) {
	t.Helper()
	m.accepted++
	m.want[subject]++
	waitFor(t, 30*time.Second, subject+" delivered and nothing else", m.check)
}

// check compares the accepted counter, the queue and the mailbox with
// what the test expects.
func (m *mx) check() error {
	acc, err := m.metricErr("clustermail_messages_accepted_total")
	if err != nil {
		return err
	}
	if acc != m.accepted {
		return fmt.Errorf("clustermail_messages_accepted_total = %v, want %v", acc, m.accepted)
	}
	depth, err := m.metricErr("clustermail_queue_depth")
	if err != nil {
		return err
	}
	if depth != 0 {
		return fmt.Errorf("clustermail_queue_depth = %v, want 0", depth)
	}
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := m.n.client().Messages(c, mxAccount)
	if err != nil {
		return err
	}
	got := map[string]int{}
	for _, msg := range msgs {
		got[msg.Subject]++
	}
	for s, n := range got {
		if m.want[s] != n {
			return fmt.Errorf("mailbox holds %q %d times, want %d (mailbox %v)", s, n, m.want[s], got)
		}
	}
	for s, n := range m.want {
		if got[s] != n {
			return fmt.Errorf("mailbox holds %q %d times, want %d (mailbox %v)", s, got[s], n, got)
		}
	}
	return nil
}

// ---- a raw SMTP client, for what a real client would refuse to send ----

type smtpConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

type reply struct {
	code int
	enh  string // enhanced status code of the last line, "" when none
	text string // the lines without their codes, joined by "\n"
}

func (r reply) String() string {
	return fmt.Sprintf("%d %q", r.code, r.text)
}

var enhRe = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}$`)

// dial connects and reads the 220 greeting.
func (m *mx) dial(t *testing.T) *smtpConn {
	t.Helper()
	c := m.dialRaw(t)
	c.expect(220, "")
	return c
}

func (m *mx) dialRaw(t *testing.T) *smtpConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", m.n.smtp, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &smtpConn{t: t, c: conn, r: bufio.NewReader(conn)}
}

func (c *smtpConn) close() { c.c.Close() }

func (c *smtpConn) write(s string) {
	c.t.Helper()
	if err := c.writeErr(s); err != nil {
		c.t.Fatalf("write %s: %v", abbrev(s), err)
	}
}

func (c *smtpConn) writeErr(s string) error {
	_ = c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := io.WriteString(c.c, s)
	return err
}

// read reads one whole reply, multi-line or not, by the deadline.
func (c *smtpConn) read(deadline time.Time) (reply, error) {
	_ = c.c.SetReadDeadline(deadline)
	var r reply
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			if line != "" {
				return r, fmt.Errorf("%w after partial line %q", err, line)
			}
			return r, err
		}
		l, ok := strings.CutSuffix(line, "\r\n")
		if !ok || len(l) < 3 || (len(l) > 3 && l[3] != ' ' && l[3] != '-') {
			return r, fmt.Errorf("malformed reply line %q", line)
		}
		code, err := strconv.Atoi(l[:3])
		if err != nil || (r.code != 0 && code != r.code) {
			return r, fmt.Errorf("malformed reply line %q", line)
		}
		r.code = code
		if len(l) > 4 {
			lines = append(lines, l[4:])
		} else {
			lines = append(lines, "")
		}
		if len(l) == 3 || l[3] == ' ' {
			break
		}
	}
	r.text = strings.Join(lines, "\n")
	if f := strings.Fields(lines[len(lines)-1]); len(f) > 0 && enhRe.MatchString(f[0]) {
		r.enh = f[0]
	}
	return r, nil
}

// expect reads the next reply and fails unless it has the code and, when
// enh is not empty, the enhanced code.
func (c *smtpConn) expect(code int, enh string) reply {
	c.t.Helper()
	r, err := c.read(time.Now().Add(10 * time.Second))
	if err != nil {
		c.t.Fatalf("want %d %s, got error: %v", code, enh, err)
	}
	if r.code != code || (enh != "" && r.enh != enh) {
		c.t.Fatalf("want %d %s, got %s", code, enh, r)
	}
	return r
}

func (c *smtpConn) cmd(line string, code int, enh string) reply {
	c.t.Helper()
	c.write(line + "\r\n")
	return c.expect(code, enh)
}

func (c *smtpConn) quit() {
	c.t.Helper()
	c.cmd("QUIT", 221, "2.0.0")
	c.expectClosed(10 * time.Second)
	c.close()
}

// expectClosed reads until the server closes the connection, which must
// happen within d, and returns the replies read on the way.
func (c *smtpConn) expectClosed(d time.Duration) []reply {
	c.t.Helper()
	deadline := time.Now().Add(d)
	var got []reply
	for {
		r, err := c.read(deadline)
		switch {
		case err == nil:
			got = append(got, r)
			continue
		case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
			return got
		default:
			c.t.Fatalf("connection not closed within %v: %v (replies %v)", d, err, got)
		}
	}
}

// expectClosedWith checks that the server sends exactly one more reply
// (code, enh) and closes the connection within d.
func (c *smtpConn) expectClosedWith(d time.Duration, code int, enh string) {
	c.t.Helper()
	got := c.expectClosed(d)
	if len(got) != 1 || got[0].code != code || (enh != "" && got[0].enh != enh) {
		c.t.Fatalf("want %d %s then close, got %v", code, enh, got)
	}
}

func abbrev(s string) string {
	if len(s) > 80 {
		return fmt.Sprintf("%q... (%d bytes)", s[:80], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// step is one command line (CRLF added) and the reply it must get.
type step struct {
	send string
	code int
	enh  string // checked when not empty
}

func (c *smtpConn) run(steps []step) {
	c.t.Helper()
	for _, s := range steps {
		c.write(s.send + "\r\n")
		r, err := c.read(time.Now().Add(10 * time.Second))
		if err != nil {
			c.t.Fatalf("%s: want %d %s, got error: %v", abbrev(s.send), s.code, s.enh, err)
		}
		if r.code != s.code || (s.enh != "" && r.enh != s.enh) {
			c.t.Fatalf("%s: want %d %s, got %s", abbrev(s.send), s.code, s.enh, r)
		}
	}
}

var (
	mailOK = step{"MAIL FROM:<" + mxSender + ">", 250, "2.0.0"}
	rcptOK = step{"RCPT TO:<" + mxAccount + ">", 250, "2.0.0"}
)

// body builds a message of exactly size octets (before the end marker),
// in lines of at most 78 octets.
func body(subject string, size int) string {
	var b strings.Builder
	b.WriteString("From: " + mxSender + "\r\nSubject: " + subject + "\r\n\r\n")
	line := strings.Repeat("abcdefghij", 7) + "\r\n" // 72 octets
	for b.Len()+len(line) <= size-2 {
		b.WriteString(line)
	}
	if n := size - b.Len() - 2; n >= 0 {
		b.WriteString(strings.Repeat("z", n) + "\r\n")
	}
	return b.String()
}

// ---- the cases ----

// TestSMTPBadEnvelope: refused senders and recipients (no backscatter, no
// open relay, bad syntax), commands out of order and unknown commands.
func TestSMTPBadEnvelope(t *testing.T) {
	m := newMX(t)
	long := strings.Repeat("x", 300)
	cases := []struct {
		name   string
		noEHLO bool
		steps  []step
	}{
		{"unknown user of a hosted domain", false, []step{mailOK,
			{"RCPT TO:<nobody@example.test>", 550, "5.1.1"}, {"DATA", 503, "5.5.1"}}},
		{"unknown user, then valid one, then RSET", false, []step{mailOK,
			{"RCPT TO:<nobody@example.test>", 550, "5.1.1"}, rcptOK, {"RSET", 250, "2.0.0"}, {"DATA", 503, "5.5.1"}}},
		{"relay to another domain", false, []step{mailOK,
			{"RCPT TO:<victim@elsewhere.test>", 554, "5.7.1"}, {"DATA", 503, "5.5.1"}}},
		{"relay to a subdomain of a hosted domain", false, []step{mailOK,
			{"RCPT TO:<victim@sub.example.test>", 554, "5.7.1"}}},
		{"relay through a source route", false, []step{mailOK,
			{"RCPT TO:<@example.test:victim@elsewhere.test>", 554, "5.7.1"}}},
		{"relay through the percent hack", false, []step{mailOK,
			{"RCPT TO:<victim%elsewhere.test@example.test>", 550, "5.1.1"}}},
		{"relay through a quoted local part", false, []step{mailOK,
			{`RCPT TO:<"victim@elsewhere.test"@example.test>`, 550, "5.1.1"}}},
		{"relay through a bang path", false, []step{mailOK,
			{"RCPT TO:<elsewhere.test!victim@example.test>", 550, "5.1.1"}}},
		{"recipient without domain", false, []step{mailOK, {"RCPT TO:<nobody>", 501, "5.5.2"}}},
		{"recipient with empty domain", false, []step{mailOK, {"RCPT TO:<nobody@>", 501, "5.5.2"}}},
		{"recipient with empty local part", false, []step{mailOK, {"RCPT TO:<@example.test>", 501, "5.5.2"}}},
		{"empty recipient", false, []step{mailOK, {"RCPT TO:<>", 501, "5.5.2"}}},
		{"recipient without closing bracket", false, []step{mailOK, {"RCPT TO:<" + mxAccount, 501, "5.5.2"}}},
		{"recipient without TO:", false, []step{mailOK, {"RCPT <" + mxAccount + ">", 501, "5.5.2"}}},
		{"recipient with a space", false, []step{mailOK, {`RCPT TO:<"no body"@example.test>`, 553, "5.1.3"}}},
		{"recipient too long", false, []step{mailOK, {"RCPT TO:<" + long + "@example.test>", 553, "5.1.3"}}},
		{"recipient not UTF-8", false, []step{mailOK, {"RCPT TO:<r\xffcpt@example.test>", 553, "5.1.3"}}},
		{"unknown RCPT parameter", false, []step{mailOK, {"RCPT TO:<" + mxAccount + "> X-FOO=1", 555, "5.5.4"}, {"DATA", 503, "5.5.1"}}},
		{"sender without domain", false, []step{{"MAIL FROM:<sender>", 501, "5.5.2"}, {"RCPT TO:<" + mxAccount + ">", 503, "5.5.1"}}},
		{"sender with a space", false, []step{{`MAIL FROM:<"a b"@client.test>`, 553, "5.1.7"}, {"RCPT TO:<" + mxAccount + ">", 503, "5.5.1"}}},
		{"sender too long", false, []step{{"MAIL FROM:<" + long + "@client.test>", 553, "5.1.7"}}},
		{"sender not UTF-8", false, []step{{"MAIL FROM:<s\xffnder@client.test>", 553, "5.1.7"}, {"DATA", 503, "5.5.1"}}},
		{"sender without FROM:", false, []step{{"MAIL <" + mxSender + ">", 501, "5.5.2"}}},
		{"unknown MAIL parameter", false, []step{{"MAIL FROM:<" + mxSender + "> X-FOO=1", 555, "5.5.4"}, {"RCPT TO:<" + mxAccount + ">", 503, "5.5.1"}}},
		{"null sender, unknown user", false, []step{{"MAIL FROM:<>", 250, "2.0.0"}, {"RCPT TO:<nobody@example.test>", 550, "5.1.1"}, {"DATA", 503, "5.5.1"}}},
		// Out of order (RFC 5321 4.1.4: 503).
		{"MAIL before EHLO", true, []step{{"MAIL FROM:<" + mxSender + ">", 503, "5.5.1"}, {"EHLO client.test", 250, ""}, mailOK}},
		{"RCPT before MAIL", false, []step{{"RCPT TO:<" + mxAccount + ">", 503, "5.5.1"}}},
		{"DATA before MAIL", false, []step{{"DATA", 503, "5.5.1"}, {"NOOP", 250, "2.0.0"}}},
		{"DATA before RCPT", false, []step{mailOK, {"DATA", 503, "5.5.1"}, {"NOOP", 250, "2.0.0"}}},
		{"BDAT before RCPT", false, []step{mailOK, {"BDAT 7 LAST\r\nhello", 503, "5.5.1"}, {"NOOP", 250, "2.0.0"}}},
		{"nested MAIL", false, []step{mailOK, rcptOK, {"MAIL FROM:<other@client.test>", 503, "5.5.1"}, {"RSET", 250, "2.0.0"}}},
		{"DATA with an argument", false, []step{mailOK, rcptOK, {"DATA now", 501, "5.5.4"}, {"RSET", 250, "2.0.0"}}},
		{"HELO without a domain", true, []step{{"HELO", 501, "5.5.2"}, {"EHLO", 501, "5.5.2"}, {"HELO client.test", 250, ""}}},
		// Unknown and unimplemented commands (500 and 502).
		{"unknown command", false, []step{{"XYZZ", 500, "5.5.2"}, {"NOOP", 250, "2.0.0"}}},
		{"unknown long command", false, []step{{"FOOBAR baz", 500, "5.5.2"}, {"NOOP", 250, "2.0.0"}}},
		{"unknown command before EHLO", true, []step{{"WHAT is this", 500, "5.5.2"}, {"EHLO client.test", 250, ""}}},
		{"empty line", false, []step{{"", 500, "5.5.2"}, {"NOOP", 250, "2.0.0"}}},
		{"blank line", false, []step{{"   ", 500, "5.5.2"}, {"NOOP", 250, "2.0.0"}}},
		{"HELP", false, []step{{"HELP", 502, "5.5.1"}}},
		{"EXPN", false, []step{{"EXPN staff", 502, "5.5.1"}}},
		{"TURN", false, []step{{"TURN", 502, "5.5.1"}}},
		{"VRFY reveals nothing", false, []step{{"VRFY " + mxAccount, 252, "2.5.0"}, {"VRFY nobody@example.test", 252, "2.5.0"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := m.dial(t)
			if !tc.noEHLO {
				c.cmd("EHLO client.test", 250, "")
			}
			c.run(tc.steps)
			c.quit()
			m.settle(t)
		})
	}
}

// TestSMTPLimits: message size, recipients per message, line length.
func TestSMTPLimits(t *testing.T) {
	m := newMX(t)
	transaction := func(t *testing.T) *smtpConn {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		c.run([]step{mailOK, rcptOK})
		return c
	}
	dataCase := func(name string, msg string, code int, enh string) {
		t.Run(name, func(t *testing.T) {
			c := transaction(t)
			c.cmd("DATA", 354, "")
			c.write(msg + ".\r\n")
			c.expect(code, enh)
			c.cmd("NOOP", 250, "2.0.0") // still in step with the client
			c.quit()
			m.settle(t)
		})
	}
	dataCase("message over the size limit", body("too-big", m.maxSize+1), 552, "5.3.4")
	dataCase("message far over the size limit", body("much-too-big", 4*m.maxSize), 552, "5.3.4")

	t.Run("message one octet under the size limit", func(t *testing.T) {
		c := transaction(t)
		c.cmd("DATA", 354, "")
		c.write(body("under-limit", m.maxSize-1) + ".\r\n")
		c.expect(250, "2.0.0")
		c.quit()
		m.delivered(t, "under-limit")
		m.settle(t)
	})
	t.Run("message at the size limit", func(t *testing.T) {
		// RFC 1870: SIZE is the largest message accepted. go-smtp v0.25.1's
		// DATA reader refuses a message of exactly MaxMessageBytes (its
		// BDAT path accepts it); smtpd cannot reach that reader.
		c := transaction(t)
		c.cmd("DATA", 354, "")
		c.write(body("at-limit", m.maxSize) + ".\r\n")
		r, err := c.read(time.Now().Add(10 * time.Second))
		switch {
		case err != nil:
			t.Fatal(err)
		case r.code == 250:
			c.quit()
			m.delivered(t, "at-limit")
		case r.code == 552 && r.enh == "5.3.4":
			t.Logf("known go-smtp gap: a message of exactly SIZE octets is refused (%s)", r)
			c.quit()
		default:
			t.Fatalf("want 250, got %s", r)
		}
		m.settle(t)
	})
	t.Run("BDAT at the size limit", func(t *testing.T) {
		c := transaction(t)
		msg := body("bdat-at-limit", m.maxSize)
		c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg), msg))
		c.expect(250, "2.0.0")
		c.quit()
		m.delivered(t, "bdat-at-limit")
		m.settle(t)
	})
	t.Run("message over the size limit, go-smtp client", func(t *testing.T) {
		code, text, err := send(m.n.smtp, mxSender, []string{mxAccount}, body("too-big-client", m.maxSize+100))
		if err != nil || code != 552 {
			t.Fatalf("got %d %s %v, want 552", code, text, err)
		}
		m.settle(t)
	})
	for _, tc := range []struct {
		name  string
		param string
		code  int
		enh   string
	}{
		{"SIZE over the limit", "SIZE=" + strconv.Itoa(64<<10+1), 552, "5.3.4"},
		{"SIZE far over the limit", "SIZE=4000000000", 552, "5.3.4"},
		{"SIZE not a number", "SIZE=lots", 501, "5.5.4"},
		{"SIZE negative", "SIZE=-1", 501, "5.5.4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := m.dial(t)
			c.cmd("EHLO client.test", 250, "")
			c.run([]step{{"MAIL FROM:<" + mxSender + "> " + tc.param, tc.code, tc.enh}, {"RCPT TO:<" + mxAccount + ">", 503, "5.5.1"}})
			c.quit()
			m.settle(t)
		})
	}
	t.Run("SIZE at the limit", func(t *testing.T) {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		c.run([]step{{"MAIL FROM:<" + mxSender + "> SIZE=" + strconv.Itoa(m.maxSize), 250, "2.0.0"}, rcptOK, {"RSET", 250, "2.0.0"}})
		c.quit()
		m.settle(t)
	})
	t.Run("BDAT over the size limit", func(t *testing.T) {
		c := transaction(t)
		msg := body("bdat-too-big", m.maxSize+1)
		c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg), msg))
		c.expect(552, "5.3.4")
		c.cmd("NOOP", 250, "2.0.0")
		c.quit()
		m.settle(t)
	})
	t.Run("BDAT chunks adding up over the size limit", func(t *testing.T) {
		c := transaction(t)
		msg := body("bdat-chunks-too-big", m.maxSize+1)
		half := len(msg) / 2
		c.write(fmt.Sprintf("BDAT %d\r\n%s", half, msg[:half]))
		c.expect(250, "2.0.0")
		c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg)-half, msg[half:]))
		c.expect(552, "5.3.4")
		c.cmd("NOOP", 250, "2.0.0")
		c.quit()
		m.settle(t)
	})

	t.Run("sixth recipient", func(t *testing.T) {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		c.run([]step{mailOK})
		for i := 0; i < mxMaxRcpts; i++ {
			c.run([]step{rcptOK})
		}
		c.run([]step{{"RCPT TO:<" + mxAccount + ">", 452, "4.5.3"}, {"RCPT TO:<other@example.test>", 452, "4.5.3"}, {"RSET", 250, "2.0.0"}})
		c.quit()
		m.settle(t)
	})
	t.Run("sixth recipient, then DATA for the five", func(t *testing.T) {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		c.run([]step{mailOK})
		for i := 0; i < mxMaxRcpts; i++ {
			c.run([]step{rcptOK})
		}
		c.run([]step{{"RCPT TO:<" + mxAccount + ">", 452, "4.5.3"}, {"DATA", 354, ""}})
		c.write(body("five-rcpts", 200) + ".\r\n")
		c.expect(250, "2.0.0")
		c.quit()
		m.delivered(t, "five-rcpts") // once: the five are the same mailbox
		m.settle(t)
	})

	// Lines: RFC 5321 4.5.3.1.4 and .6 (1000 octets with CRLF), "500 Line too long".
	t.Run("command line at the limit", func(t *testing.T) {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		c.cmd("NOOP "+strings.Repeat("x", mxLineMax-len("NOOP ")-2), 250, "2.0.0")
		c.quit()
		m.settle(t)
	})
	for _, n := range []int{mxLineMax - len("NOOP ") - 1, 3 * mxLineMax} {
		t.Run(fmt.Sprintf("command line of %d octets", len("NOOP ")+n+2), func(t *testing.T) {
			c := m.dial(t)
			c.cmd("EHLO client.test", 250, "")
			c.write("NOOP " + strings.Repeat("x", n) + "\r\n")
			c.expectClosedWith(10*time.Second, 500, "5.5.2")
			m.settle(t)
		})
	}
	t.Run("BDAT with a line over the limit", func(t *testing.T) {
		c := transaction(t)
		msg := "Subject: long-line\r\n\r\n" + strings.Repeat("y", mxLineMax+10) + "\r\n"
		c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg), msg))
		c.expect(500, "5.5.2")
		// Chunks are counted in octets, so the session could go on; but
		// when go-smtp reads the chunk ahead with its command line, its
		// command line limit applies to it and it closes the connection.
		_ = c.writeErr("NOOP\r\n")
		if r, err := c.read(time.Now().Add(10 * time.Second)); err == nil {
			if r.code != 250 {
				t.Fatalf("NOOP: got %s", r)
			}
			c.quit()
		} else if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("NOOP: %v", err)
		}
		m.settle(t)
	})
	t.Run("message line at the limit", func(t *testing.T) {
		c := transaction(t)
		c.cmd("DATA", 354, "")
		c.write("Subject: line-at-limit\r\n\r\n" + strings.Repeat("y", mxLineMax-2) + "\r\n.\r\n")
		c.expect(250, "2.0.0")
		c.quit()
		m.delivered(t, "line-at-limit")
		m.settle(t)
	})
	for _, n := range []int{mxLineMax - 1, mxLineMax + 500, 3 * mxLineMax} {
		t.Run(fmt.Sprintf("message line of %d octets", n+2), func(t *testing.T) {
			c := transaction(t)
			c.cmd("DATA", 354, "")
			c.write("Subject: long-line\r\n\r\n" + strings.Repeat("y", n) + "\r\nmore\r\n.\r\n")
			c.expectClosedWith(10*time.Second, 500, "5.5.2")
			m.settle(t)
		})
	}
}

// smuggled follows a fake end of data with a whole second transaction,
// then the real end: SMTP smuggling (CVE-2023-51764/5/6).
const smuggled = "MAIL FROM:<evil@client.test>\r\nRCPT TO:<" + mxAccount + ">\r\nDATA\r\n" +
	"From: evil@client.test\r\nSubject: SMUGGLED\r\n\r\nsmuggled\r\n.\r\n"

// TestSMTPBareCRLF: bare LF and bare CR in the message are refused with
// 554 5.6.0, whatever they try to end or start.
func TestSMTPBareCRLF(t *testing.T) {
	m := newMX(t)
	head := "From: " + mxSender + "\r\nSubject: legit\r\n\r\nlegit body"
	cases := []struct {
		name string
		data string // sent after 354, must end the data for a strict reader
	}{
		{"bare LF ending a header", "From: " + mxSender + "\nSubject: lf\r\n\r\nbody\r\n.\r\n"},
		{"bare LF in the body", head + "\nmore\r\n.\r\n"},
		{"bare LF first", "\nSubject: lf\r\n\r\nbody\r\n.\r\n"},
		{"bare LF before the end", head + "\n\r\n.\r\n"},
		{"bare CR in a header", "Subject: a\rb\r\n\r\nbody\r\n.\r\n"},
		{"bare CR in the body", head + "\rmore\r\n.\r\n"},
		{"CR CR LF", head + "\r\r\nmore\r\n.\r\n"},
		{`smuggling with \n.\n`, head + "\n.\n" + smuggled},
		{`smuggling with \r\n.\n`, head + "\r\n.\n" + smuggled},
		{`smuggling with \n.\r\n`, head + "\n.\r\n" + smuggled},
		{`smuggling with \r.\r\n`, head + "\r.\r\n" + smuggled},
		{`smuggling with \r\n.\r`, head + "\r\n.\r" + smuggled},
		{`smuggling with \r.\r`, head + "\r.\r" + smuggled},
		{`smuggling with \n\n.\n\n`, head + "\n\n.\n\n" + smuggled},
	}
	// go-smtp v0.25.1's DATA reader drops ".\r" at the start of a line when
	// no LF follows, so the bare CR never reaches smtpd's strict reader: the
	// message is taken whole, the smuggled text as body lines of it. A
	// relay dot-stuffs such a line ("..\r", refused), so no third party can
	// smuggle through one with it.
	knownGap := map[string]bool{`smuggling with \r\n.\r`: true}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := m.dial(t)
			c.cmd("EHLO client.test", 250, "")
			c.run([]step{mailOK, rcptOK, {"DATA", 354, ""}})
			c.write(tc.data)
			r, err := c.read(time.Now().Add(10 * time.Second))
			switch {
			case err != nil:
				t.Fatal(err)
			case r.code == 554 && r.enh == "5.6.0":
			case knownGap[tc.name] && r.code == 250:
				t.Logf("known go-smtp gap: a bare CR after a leading dot is dropped, not refused (%s)", r)
			default:
				t.Fatalf("want 554 5.6.0, got %s", r)
			}
			// One reply for the whole input: had the server taken the fake
			// end, the smuggled commands' replies would come before NOOP's.
			c.cmd("NOOP", 250, "2.0.0")
			c.quit()
			if r.code == 250 {
				m.delivered(t, "legit") // one message, and no SMUGGLED one
			}
			m.settle(t)
		})
	}
	t.Run("pipelined, without waiting for 354", func(t *testing.T) {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		c.write("MAIL FROM:<" + mxSender + ">\r\nRCPT TO:<" + mxAccount + ">\r\nDATA\r\n" + head + "\n.\n" + smuggled + "NOOP\r\n")
		for _, want := range []int{250, 250, 354, 554, 250} {
			c.expect(want, "")
		}
		c.quit()
		m.settle(t)
	})
	t.Run("bare CR right before the end", func(t *testing.T) {
		// go-smtp v0.25.1 does not see the end in "\r\r\n.\r\n" (a CR after
		// a CR leaves its "after CR" state) and waits for more data: the
		// refusal comes when the read times out, then the connection ends.
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		c.run([]step{mailOK, rcptOK, {"DATA", 354, ""}})
		c.write(head + "\r\r\n.\r\n")
		got := c.expectClosed(mxTimeout + 8*time.Second)
		if len(got) == 0 || got[0].code != 554 || got[0].enh != "5.6.0" {
			t.Fatalf("want 554 5.6.0 (then 421), got %v", got)
		}
		m.settle(t)
	})
	t.Run("bare LF in a BDAT chunk", func(t *testing.T) {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		c.run([]step{mailOK, rcptOK})
		chunk := head + "\nmore\r\n"
		c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk), chunk))
		c.expect(554, "5.6.0")
		c.cmd("NOOP", 250, "2.0.0")
		c.quit()
		m.settle(t)
	})
}

// TestSMTPGarbageCommands: binary, NULs, invalid UTF-8 as commands get
// 500; the connection survives a few, and the node survives all.
func TestSMTPGarbageCommands(t *testing.T) {
	m := newMX(t)
	rnd := rand.New(rand.NewSource(5321))
	random := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			for b[i] == 0 || b[i] == '\r' || b[i] == '\n' || b[i] == ' ' || (b[i] >= 'A' && b[i] <= 'z') {
				b[i] = byte(rnd.Intn(256))
			}
		}
		return string(b)
	}
	cases := []struct{ name, line string }{
		{"random binary", random(64)},
		{"random binary, four bytes", random(4)},
		{"random binary, long", random(900)},
		{"NULs", "\x00\x00\x00\x00\x00\x00"},
		{"NUL inside a verb", "NO\x00P"},
		{"invalid UTF-8", "\xff\xfe\xfd\xfc\xc3\x28"},
		{"control characters", "\x01\x02\x03\x04\x1b[2J\x7f"},
		{"bare CR inside a command", "NOOP\rMAIL FROM:<evil@client.test>"},
		{"TLS ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"},
		{"HTTP request", "GET / HTTP/1.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := m.dial(t)
			c.cmd(tc.line, 500, "5.5.2")
			c.cmd("EHLO client.test", 250, "")
			c.cmd(tc.line, 500, "5.5.2")
			c.cmd(tc.line, 500, "5.5.2")
			c.run([]step{mailOK, rcptOK, {"RSET", 250, "2.0.0"}})
			c.quit()
			m.settle(t)
		})
	}
	t.Run("too many errors", func(t *testing.T) {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		for i := 0; i < 3; i++ {
			c.cmd(random(40), 500, "5.5.2")
		}
		c.write(random(40) + "\r\n")
		c.expect(500, "5.5.2")
		c.expectClosedWith(10*time.Second, 421, "4.7.0")
		m.settle(t)
	})
	t.Run("a flood of garbage", func(t *testing.T) {
		c := m.dial(t)
		var flood strings.Builder
		for flood.Len() < 256<<10 {
			flood.WriteString(random(1+rnd.Intn(200)) + "\r\n")
		}
		// The server hangs up after a few errors; the rest may be refused.
		_ = c.writeErr(flood.String())
		got := c.expectClosed(10 * time.Second)
		if len(got) == 0 || got[len(got)-1].code != 421 {
			t.Fatalf("want 500s then 421, got %v", got)
		}
		for _, r := range got[:len(got)-1] {
			if r.code != 500 {
				t.Fatalf("want 500s then 421, got %v", got)
			}
		}
		m.settle(t)
	})
}

// TestSMTPPipelining: many commands in one write are answered in order.
func TestSMTPPipelining(t *testing.T) {
	m := newMX(t)
	t.Run("a transaction in one write", func(t *testing.T) {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		c.write("MAIL FROM:<" + mxSender + ">\r\nRCPT TO:<" + mxAccount + ">\r\nRCPT TO:<nobody@example.test>\r\n" +
			"RCPT TO:<victim@elsewhere.test>\r\nRCPT TO:<" + mxAccount + ">\r\nDATA\r\n")
		for _, w := range []struct {
			code int
			enh  string
		}{{250, "2.0.0"}, {250, "2.0.0"}, {550, "5.1.1"}, {554, "5.7.1"}, {250, "2.0.0"}, {354, ""}} {
			c.expect(w.code, w.enh)
		}
		c.write(body("pipelined", 500) + ".\r\n")
		c.expect(250, "2.0.0")
		c.quit()
		m.delivered(t, "pipelined")
		m.settle(t)
	})
	t.Run("a whole session in one write", func(t *testing.T) {
		c := m.dial(t)
		c.write("EHLO client.test\r\nMAIL FROM:<" + mxSender + ">\r\nRCPT TO:<" + mxAccount + ">\r\nDATA\r\n" +
			body("one-write", 300) + ".\r\nQUIT\r\n")
		for _, want := range []int{250, 250, 250, 354, 250, 221} {
			c.expect(want, "")
		}
		c.expectClosed(10 * time.Second)
		m.delivered(t, "one-write")
		m.settle(t)
	})
	t.Run("errors in a pipelined group", func(t *testing.T) {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		c.write("MAIL FROM:<sender>\r\nRCPT TO:<" + mxAccount + ">\r\nDATA\r\nNOOP\r\n")
		for _, w := range []struct {
			code int
			enh  string
		}{{501, "5.5.2"}, {503, "5.5.1"}, {503, "5.5.1"}, {250, "2.0.0"}} {
			c.expect(w.code, w.enh)
		}
		c.quit()
		m.settle(t)
	})
	t.Run("a flood of 1000 RSET and NOOP", func(t *testing.T) {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		const n = 1000
		var flood strings.Builder
		for i := 0; i < n; i++ {
			if i%2 == 0 {
				flood.WriteString("NOOP\r\n")
			} else {
				flood.WriteString("RSET\r\n")
			}
		}
		werr := make(chan error, 1)
		go func() { werr <- c.writeErr(flood.String()) }() // read while writing
		for i := 0; i < n; i++ {
			r := c.expect(250, "2.0.0")
			want := "nothing" // NOOP's text
			if i%2 == 1 {
				want = "reset"
			}
			if !strings.Contains(r.text, want) {
				t.Fatalf("reply %d out of order: %s", i, r)
			}
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
		c.run([]step{mailOK, rcptOK, {"RSET", 250, "2.0.0"}})
		c.quit()
		m.settle(t)
	})
}

// TestSMTPAbortedData: a client that goes away in the middle of DATA
// leaves nothing behind.
func TestSMTPAbortedData(t *testing.T) {
	m := newMX(t)
	cases := []struct {
		name    string
		partial string
	}{
		{"in the headers", "From: " + mxSender + "\r\nSubj"},
		{"in the middle of a line", "Subject: cut\r\n\r\npartial li"},
		{"after a whole line", "Subject: cut\r\n\r\nwhole line\r\n"},
		{"after the dot", "Subject: cut\r\n\r\nbody\r\n."},
		{"after the dot and CR", "Subject: cut\r\n\r\nbody\r\n.\r"},
		{"in a large message", body("cut", 60<<10)},
	}
	for _, tc := range cases {
		for _, half := range []bool{false, true} {
			name := tc.name + ", close"
			if half {
				name = tc.name + ", half-close"
			}
			t.Run(name, func(t *testing.T) {
				c := m.dial(t)
				c.cmd("EHLO client.test", 250, "")
				c.run([]step{mailOK, rcptOK, {"DATA", 354, ""}})
				c.write(tc.partial)
				if !half {
					c.close()
				} else {
					// The client stops sending but still listens: the
					// server must not take the end of input for the end of data.
					if err := c.c.(*net.TCPConn).CloseWrite(); err != nil {
						t.Fatal(err)
					}
					for _, r := range c.expectClosed(10 * time.Second) {
						if r.code/100 == 2 {
							t.Fatalf("got %s for a message cut short", r)
						}
					}
				}
				m.settle(t)
			})
		}
	}
	t.Run("during a BDAT chunk", func(t *testing.T) {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		c.run([]step{mailOK, rcptOK})
		c.write("BDAT 1000 LAST\r\nSubject: cut\r\n\r\nonly part of it\r\n")
		c.close()
		m.settle(t)
	})
}

// TestSMTPSlowClients: idle and slow clients are cut off after
// --smtp-timeout, with 421, and leave nothing behind.
func TestSMTPSlowClients(t *testing.T) {
	m := newMX(t)
	// closedAfterTimeout checks the server sends 421 4.4.2 and closes,
	// not before the timeout and not long after it.
	closedAfterTimeout := func(t *testing.T, c *smtpConn, since time.Time) {
		t.Helper()
		c.expectClosedWith(mxTimeout+8*time.Second, 421, "4.4.2")
		if d := time.Since(since); d < mxTimeout-300*time.Millisecond {
			t.Fatalf("closed after %v, before the %v timeout", d, mxTimeout)
		}
	}
	t.Run("silent after connecting", func(t *testing.T) {
		c := m.dial(t)
		closedAfterTimeout(t, c, time.Now())
		m.settle(t)
	})
	t.Run("silent after EHLO", func(t *testing.T) {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		closedAfterTimeout(t, c, time.Now())
		m.settle(t)
	})
	t.Run("silent inside a transaction", func(t *testing.T) {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		c.run([]step{mailOK, rcptOK})
		closedAfterTimeout(t, c, time.Now())
		m.settle(t)
	})
	t.Run("silent after 354", func(t *testing.T) {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		c.run([]step{mailOK, rcptOK, {"DATA", 354, ""}})
		closedAfterTimeout(t, c, time.Now())
		m.settle(t)
	})
	t.Run("silent in the middle of the message", func(t *testing.T) {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		c.run([]step{mailOK, rcptOK, {"DATA", 354, ""}})
		c.write("Subject: stalled\r\n\r\nhalf a mess")
		closedAfterTimeout(t, c, time.Now())
		m.settle(t)
	})
	t.Run("silent in the middle of a BDAT chunk", func(t *testing.T) {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		c.run([]step{mailOK, rcptOK})
		start := time.Now()
		c.write("BDAT 1000 LAST\r\nSubject: stalled\r\n\r\nonly part of it\r\n")
		got := c.expectClosed(mxTimeout + 8*time.Second)
		if d := time.Since(start); d < mxTimeout-300*time.Millisecond {
			t.Fatalf("closed after %v, before the %v timeout", d, mxTimeout)
		}
		// The message failed for now (451), then the session ends (421).
		if len(got) != 2 || got[0].code != 451 || got[0].enh != "4.4.2" || got[1].code != 421 || got[1].enh != "4.4.2" {
			t.Fatalf("want 451 4.4.2, 421 4.4.2 then close, got %v", got)
		}
		m.settle(t)
	})
	t.Run("a command trickled byte by byte", func(t *testing.T) {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		start := time.Now()
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { // never completes the line
			defer close(done)
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if c.writeErr("x") != nil {
						return
					}
				}
			}
		}()
		// go-smtp runs the part of the line it has when the read times out
		// (bufio.Reader.ReadLine), so one 500 may come first.
		got := c.expectClosed(mxTimeout + 8*time.Second)
		close(stop)
		<-done
		if d := time.Since(start); d < mxTimeout-300*time.Millisecond {
			t.Fatalf("closed after %v, before the %v timeout", d, mxTimeout)
		}
		last := len(got) - 1
		if last < 0 || last > 1 || got[last].code != 421 || got[last].enh != "4.4.2" || (last == 1 && got[0].code != 500) {
			t.Fatalf("want [500] 421 4.4.2 then close, got %v", got)
		}
		m.settle(t)
	})
	t.Run("a slow but steady message", func(t *testing.T) {
		// The timeout is for one line, not for the whole message: lines
		// that keep coming keep the transfer alive.
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		c.run([]step{mailOK, rcptOK, {"DATA", 354, ""}})
		c.write("From: " + mxSender + "\r\nSubject: slow-steady\r\n\r\n")
		tick := time.NewTicker(mxTimeout / 4)
		defer tick.Stop()
		for end := time.Now().Add(mxTimeout + mxTimeout/2); time.Now().Before(end); {
			<-tick.C
			c.write("a line that arrives in time\r\n")
		}
		c.write(".\r\n")
		c.expect(250, "2.0.0")
		c.quit()
		m.delivered(t, "slow-steady")
		m.settle(t)
	})
}

// TestSMTPConnectionLimit: past --max-connections a client gets 421 4.7.0
// at once; closing connections makes room again.
func TestSMTPConnectionLimit(t *testing.T) {
	m := newMX(t)
	refused0 := m.metric(t, "clustermail_smtp_connections_refused_total")
	// Hold the limit's worth of sessions, kept busy so the idle timeout
	// does not free a slot behind the test's back.
	var held []*smtpConn
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < mxMaxConns; i++ {
		c := m.dial(t)
		c.cmd("EHLO client.test", 250, "")
		held = append(held, c)
	}
	// Only this goroutine uses the held connections until it stops.
	keepErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(mxTimeout / 4)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for _, c := range held {
				if err := c.writeErr("NOOP\r\n"); err != nil {
					keepErr <- err
					return
				}
				if r, err := c.read(time.Now().Add(5 * time.Second)); err != nil || r.code != 250 {
					keepErr <- fmt.Errorf("keep-alive NOOP: %v %v", r, err)
					return
				}
			}
		}
	}()
	for i := 0; i < 3; i++ {
		c := m.dialRaw(t)
		c.expectClosedWith(10*time.Second, 421, "4.7.0")
	}
	if v := m.metric(t, "clustermail_smtp_connections_refused_total"); v != refused0+3 {
		t.Fatalf("clustermail_smtp_connections_refused_total = %v, want %v", v, refused0+3)
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-keepErr:
		t.Fatalf("a held session failed: %v", err)
	default:
	}
	// The held sessions still work, then go.
	for _, c := range held {
		c.run([]step{mailOK, rcptOK, {"RSET", 250, "2.0.0"}})
		c.quit()
	}
	waitFor(t, 15*time.Second, "a new connection to be served", func() error {
		conn, err := net.DialTimeout("tcp", m.n.smtp, 5*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if !strings.HasPrefix(line, "220 ") {
			return fmt.Errorf("greeting %q %v", line, err)
		}
		return nil
	})
	m.settle(t)
}
