package e2e

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"clustermail/api"
	"clustermail/certs"
)

// Outbound delivery end to end: real nodes take mail on the submission
// port (STARTTLS, AUTH) and deliver it to fake remote MTAs found through a
// fake DNS server (fakes_test.go), retrying, warning and bouncing as the
// remote side and the clock say.
//
// "Exactly once" checks first wait for the delivery, then hold a condition
// that can only go wrong for a few retry periods (see holds): with
// --retry-schedule 1s a second delivery, a late retry or a spurious DSN
// would show within that window.

const (
	obDomain  = "example.test"
	alice     = "alice@example.test"
	alicePass = "alice's secret"
	bob       = "bob@example.test"
	bobPass   = "bob's secret"

	retryPeriod = time.Second // --retry-schedule of most tests
)

// loIP is the loopback address 127.0.0.n.
func loIP(n int) string { return "127.0.0." + strconv.Itoa(n) }

// outboundEnv is a cluster with a hosted domain and two accounts, pointed
// at a fake DNS server; the remote MTAs of the test listen on its port.
type outboundEnv struct {
	t   *testing.T
	c   *testCluster
	dns *fakeDNS
}

func newOutbound(t *testing.T, nodes int, extra ...string) *outboundEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real processes")
	}
	d := newFakeDNS(t)
	cert, key, err := certs.WriteSelfSigned(t.TempDir(), []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	flags := []string{"--dns", d.addr, "--outbound-port", strconv.Itoa(d.port), "--retry-schedule", "1s",
		"--tls-cert", cert, "--tls-key", key, "--submission-addr", subAddr}
	c := newCluster(t, nodes, append(flags, extra...)...)
	n := c.nodes[0]
	if _, err := n.client().AddDomain(ctx(t), obDomain); err != nil {
		t.Fatal(err)
	}
	for a, pw := range map[string]string{alice: alicePass, bob: bobPass} {
		if _, err := n.client().AddUser(ctx(t), api.UserAddRequest{Address: a, Password: pw}); err != nil {
			t.Fatal(err)
		}
	}
	return &outboundEnv{t: t, c: c, dns: d}
}

// mta starts a fake remote MTA on 127.0.0.n at the test's port.
func (e *outboundEnv) mta(n int) *fakeMTA { return newFakeMTA(e.t, loIP(n), e.dns.port) }

// submitted is the outcome of one submission: the reply that ended it.
type submitted struct {
	code int
	enh  string // enhanced status code, "5.7.8"
	text string
	step string // the command that got the reply
}

// queueID is the id in a "250 2.0.0 OK: queued as ID" reply.
func (s submitted) queueID() string {
	_, id, _ := strings.Cut(s.text, "queued as ")
	return strings.TrimSpace(id)
}

// submit sends one message on a submission port with go-smtp's client:
// STARTTLS (the server's certificate is self-signed), AUTH PLAIN when user
// is not empty, then the transaction.
func submit(t *testing.T, addr, user, pass, from string, to []string, msg string) submitted {
	t.Helper()
	c, err := smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("submission STARTTLS to %s: %v", addr, err)
	}
	defer c.Close()
	fail := func(step string, err error) submitted {
		t.Helper()
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			t.Fatalf("submission %s: %v", step, err)
		}
		e := se.EnhancedCode
		return submitted{se.Code, fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2]), se.Message, step}
	}
	if user != "" {
		if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
			return fail("AUTH", err)
		}
	}
	if err := c.Mail(from, nil); err != nil {
		return fail("MAIL", err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return fail("RCPT", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fail("DATA", err)
	}
	if _, err := io.WriteString(w, msg); err != nil {
		t.Fatalf("submission: writing the message: %v", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return fail("end of DATA", err)
	}
	_ = c.Quit()
	return submitted{250, "", resp.StatusText, "end of DATA"}
}

// mustSubmit submits as the sender itself and fails the test unless the
// message is queued; it returns the queue id.
func mustSubmit(t *testing.T, n *node, user, pass string, to []string, msg string) string {
	t.Helper()
	s := submit(t, n.sub, user, pass, user, to, msg)
	if s.code != 250 || s.queueID() == "" {
		t.Fatalf("submission by %s to %v: %s got %d %s", user, to, s.step, s.code, s.text)
	}
	return s.queueID()
}

// bare is a message with neither Message-ID nor Date: the submission
// server adds them (RFC 6409 8).
func bare(from, subject string) string {
	return "From: <" + from + ">\r\nTo: <someone@remote.test>\r\nSubject: " + subject + "\r\n\r\nbody of " + subject + "\r\n"
}

// pythonScript is Python's smtplib as a mail client would use it:
// mode "ok" does STARTTLS (unverified context) and login, then sends;
// "notls" logs in without STARTTLS. It prints the reply that ended it.
const pythonScript = `
import smtplib, ssl, sys
host, port, mode, user, pw, frm, to, subject = sys.argv[1:9]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(host, int(port), timeout=30)
try:
    s.ehlo("python.client.test")
    if mode != "notls":
        s.starttls(context=ctx)
        s.ehlo("python.client.test")
    try:
        s.login(user, pw)
    except smtplib.SMTPNotSupportedError as e:
        print("NOAUTH", e); sys.exit(0)
    except smtplib.SMTPAuthenticationError as e:
        print(e.smtp_code, e.smtp_error.decode()); sys.exit(0)
    msg = "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nsent by smtplib\r\n" % (frm, to, subject)
    code, resp = s.mail(frm)
    if code != 250:
        print(code, resp.decode()); sys.exit(0)
    for r in to.split(","):
        code, resp = s.rcpt(r)
        if code != 250:
            print(code, resp.decode()); sys.exit(0)
    code, resp = s.data(msg)
    print(code, resp.decode())
finally:
    try:
        s.quit()
    except Exception:
        pass
`

func pythonSubmit(t *testing.T, addr, mode, user, pass, from string, to []string, subject string) string {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command("python3", "-c", pythonScript, host, port, mode, user, pass, from, strings.Join(to, ","), subject).CombinedOutput()
	if err != nil {
		t.Fatalf("python3 smtplib: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// holds checks cond again and again for d and fails the test the first
// time it does not hold. It is how "nothing more happens" is tested: the
// condition can only go wrong (a second delivery, a late DSN), so it is
// watched for a few retry periods rather than slept through.
func holds(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if err := cond(); err != nil {
			t.Fatalf("%s stopped holding: %v", what, err)
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// queueEmpty is a condition: the cluster's queue (as n sees it) is empty.
func queueEmpty(t *testing.T, n *node) func() error {
	return func() error {
		q, err := n.client().Queue(ctx(t))
		if err != nil {
			return err
		}
		if len(q) > 0 {
			return fmt.Errorf("queue holds %d entries: %+v", len(q), q)
		}
		return nil
	}
}

// deliveredOnce is a condition: the MTA took the subject exactly once.
func deliveredOnce(m *fakeMTA, subject string) func() error {
	return func() error {
		if n := m.deliveries(subject); n != 1 {
			return fmt.Errorf("%q delivered %d times at %s:%s", subject, n, m.addr, transactionsString(m.transactions()))
		}
		return nil
	}
}

// sameTransactions is a condition: the MTA saw no new transaction.
func sameTransactions(m *fakeMTA) func() error {
	n := len(m.transactions())
	return func() error {
		if got := m.transactions(); len(got) != n {
			return fmt.Errorf("%s saw %d transactions, then %d:%s", m.addr, n, len(got), transactionsString(got))
		}
		return nil
	}
}

func allOf(conds ...func() error) func() error {
	return func() error {
		for _, c := range conds {
			if err := c(); err != nil {
				return err
			}
		}
		return nil
	}
}

// inbox returns the raw messages of an account's INBOX, in UID order.
func inbox(t *testing.T, n *node, account string) ([]string, error) {
	msgs, err := n.client().Messages(ctx(t), account)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range msgs {
		raw, err := n.client().RawMessage(ctx(t), account, m.UID)
		if err != nil {
			return nil, err
		}
		out = append(out, string(raw))
	}
	return out, nil
}

// waitInbox waits until the account's INBOX holds count messages.
func waitInbox(t *testing.T, n *node, account string, count int, d time.Duration) []string {
	t.Helper()
	var msgs []string
	waitFor(t, d, fmt.Sprintf("%d messages in %s's INBOX", count, account), func() error {
		var err error
		if msgs, err = inbox(t, n, account); err != nil {
			return err
		}
		if len(msgs) != count {
			return fmt.Errorf("%d messages", len(msgs))
		}
		return nil
	})
	return msgs
}

// inboxHas is a condition: the INBOX holds exactly count messages.
func inboxHas(t *testing.T, n *node, account string, count int) func() error {
	return func() error {
		msgs, err := inbox(t, n, account)
		if err != nil {
			return err
		}
		if len(msgs) != count {
			return fmt.Errorf("%s's INBOX holds %d messages, want %d", account, len(msgs), count)
		}
		return nil
	}
}

// report is a delivery status notification taken apart.
type report struct {
	header     mail.Header
	perMessage map[string]string
	recipients []map[string]string // one field map per recipient group
	headers    string              // the text/rfc822-headers part
	text       string              // the human-readable part
}

// parseDSN checks raw is an RFC 3464 report (multipart/report with a
// message/delivery-status part) and takes its fields apart.
func parseDSN(t *testing.T, raw string) report {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatalf("DSN does not parse: %v\n%s", err, raw)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN Content-Type %q (%v), want multipart/report; report-type=delivery-status\n%s", msg.Header.Get("Content-Type"), err, raw)
	}
	r := report{header: msg.Header}
	var types []string
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("DSN parts: %v\n%s", err, raw)
		}
		b, err := io.ReadAll(p) // quoted-printable is decoded by the reader
		if err != nil {
			t.Fatalf("DSN part: %v", err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		types = append(types, ct)
		switch ct {
		case "text/plain":
			r.text = string(b)
		case "message/delivery-status":
			groups := strings.Split(strings.TrimSpace(strings.ReplaceAll(string(b), "\r\n", "\n")), "\n\n")
			r.perMessage = dsnFields(groups[0])
			for _, g := range groups[1:] {
				r.recipients = append(r.recipients, dsnFields(g))
			}
		case "text/rfc822-headers":
			r.headers = string(b)
		}
	}
	if !slices.Equal(types, []string{"text/plain", "message/delivery-status", "text/rfc822-headers"}) {
		t.Fatalf("DSN parts %v, want text/plain, message/delivery-status, text/rfc822-headers\n%s", types, raw)
	}
	if len(r.recipients) == 0 {
		t.Fatalf("DSN without a recipient group\n%s", raw)
	}
	return r
}

// dsnFields parses one group of the delivery-status part, unfolding lines.
func dsnFields(group string) map[string]string {
	out := map[string]string{}
	var last string
	for _, l := range strings.Split(group, "\n") {
		if (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) && last != "" {
			out[last] += " " + strings.TrimSpace(l)
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		last = strings.ToLower(strings.TrimSpace(k))
		out[last] = strings.TrimSpace(v)
	}
	return out
}

// recipient returns the group for the final recipient addr.
func (r report) recipient(t *testing.T, addr string) map[string]string {
	t.Helper()
	for _, g := range r.recipients {
		if strings.EqualFold(g["final-recipient"], "rfc822; "+addr) || strings.EqualFold(g["final-recipient"], "rfc822;"+addr) {
			return g
		}
	}
	t.Fatalf("DSN has no group for %s: %+v", addr, r.recipients)
	return nil
}

// expectFields checks a recipient group's fields: an exact value, or with a
// leading "~" a substring.
func expectFields(t *testing.T, g map[string]string, want map[string]string) {
	t.Helper()
	for k, w := range want {
		got, ok := g[strings.ToLower(k)]
		if sub, isSub := strings.CutPrefix(w, "~"); isSub {
			if !ok || !strings.Contains(got, sub) {
				t.Errorf("DSN %s: %q, want it to contain %q (group %+v)", k, got, sub, g)
			}
		} else if !ok || !strings.EqualFold(got, w) {
			t.Errorf("DSN %s: %q, want %q (group %+v)", k, got, w, g)
		}
	}
}

// firstField is the message's first header field, unfolded.
func firstField(msg string) string {
	lines := strings.Split(msg, "\r\n")
	f := lines[0]
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "\t") {
			break
		}
		f += " " + strings.TrimSpace(l)
	}
	return f
}

// headerCount counts the header fields called name in the header section.
func headerCount(msg, name string) int {
	hdr, _, _ := strings.Cut(msg, "\r\n\r\n")
	n := 0
	for _, l := range strings.Split(hdr, "\r\n") {
		if k, _, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, name) && !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "\t") {
			n++
		}
	}
	return n
}

// TestOutboundSubmission: a mail client submits over STARTTLS with AUTH
// (Python's smtplib and go-smtp's client), the wrong ways are refused,
// and each accepted message reaches the remote domain's MX exactly once,
// one transaction per domain.
func TestOutboundSubmission(t *testing.T) {
	t.Parallel()
	e := newOutbound(t, 1)
	n := e.c.nodes[0]
	remote, other := e.mta(2), e.mta(3)
	e.dns.mx(t, "remote.test", loIP(2))
	e.dns.mx(t, "other.test", loIP(3))

	// Without TLS, AUTH is not offered and a transaction is refused.
	c, err := smtp.Dial(n.sub)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Errorf("AUTH offered before STARTTLS")
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Errorf("STARTTLS not offered on the submission port")
	}
	if code, text, _ := smtpCode(c.Auth(sasl.NewPlainClient("", alice, alicePass))); code != 523 && code != 530 && code != 538 {
		t.Errorf("AUTH without TLS: %d %s, want 523 or 530", code, text)
	}
	if code, text, _ := smtpCode(c.Mail(alice, nil)); code != 530 {
		t.Errorf("MAIL without TLS and AUTH: %d %s, want 530", code, text)
	}
	c.Close()
	if out := pythonSubmit(t, n.sub, "notls", alice, alicePass, alice, []string{"x@remote.test"}, "py-notls"); !strings.HasPrefix(out, "NOAUTH") {
		t.Errorf("smtplib login without STARTTLS: %s, want AUTH not offered", out)
	}

	// A wrong password: 535 5.7.8, from both clients.
	if s := submit(t, n.sub, alice, "wrong", alice, []string{"x@remote.test"}, bare(alice, "wrong-pw")); s.code != 535 || s.enh != "5.7.8" || s.step != "AUTH" {
		t.Errorf("wrong password: %s got %d %s %s, want 535 5.7.8 at AUTH", s.step, s.code, s.enh, s.text)
	}
	if out := pythonSubmit(t, n.sub, "ok", alice, "wrong", alice, []string{"x@remote.test"}, "py-wrong-pw"); !strings.HasPrefix(out, "535 5.7.8") {
		t.Errorf("smtplib with a wrong password: %s, want 535 5.7.8", out)
	}
	// Someone else's address as the sender: 553 5.7.1.
	for _, forged := range []string{bob, "ceo@remote.test"} {
		if s := submit(t, n.sub, alice, alicePass, forged, []string{"x@remote.test"}, bare(forged, "forged")); s.code != 553 || s.enh != "5.7.1" || s.step != "MAIL" {
			t.Errorf("alice sending as %s: %s got %d %s %s, want 553 5.7.1 at MAIL", forged, s.step, s.code, s.enh, s.text)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Accepted: two recipients of one domain and one of another, and a
	// message from smtplib.
	mustSubmit(t, n, alice, alicePass, []string{"x@remote.test", "y@remote.test", "z@other.test"}, bare(alice, "from-go"))
	if out := pythonSubmit(t, n.sub, "ok", alice, alicePass, alice, []string{"p@remote.test"}, "from-python"); !strings.HasPrefix(out, "250 ") || !strings.Contains(out, "queued as") {
		t.Fatalf("smtplib submission: %s", out)
	}
	waitFor(t, 30*time.Second, "both messages at the MX hosts", allOf(deliveredOnce(remote, "from-go"), deliveredOnce(other, "from-go"), deliveredOnce(remote, "from-python")))
	waitFor(t, 10*time.Second, "an empty queue", queueEmpty(t, n))
	// Two retry periods more with nothing new: no second delivery.
	holds(t, 3*retryPeriod, "one delivery each", allOf(sameTransactions(remote), sameTransactions(other), queueEmpty(t, n)))

	check := func(m *fakeMTA, subject string, rcpts ...string) {
		t.Helper()
		var tx transaction
		for _, x := range m.with(subject) {
			if x.delivered() {
				tx = x
			}
		}
		got := slices.Sorted(slices.Values(tx.Rcpts))
		if !slices.Equal(got, rcpts) || tx.From != alice || len(tx.Refused) > 0 {
			t.Errorf("%s at %s: from <%s> to %v (refused %v), want from <%s> to %v in one transaction", subject, m.addr, tx.From, got, tx.Refused, alice, rcpts)
		}
		if !tx.TLS {
			t.Errorf("%s at %s: delivered without STARTTLS, which the MX offers", subject, m.addr)
		}
		if tx.Helo != n.name+".test" {
			t.Errorf("%s at %s: EHLO %q, want the node's --hostname %q", subject, m.addr, tx.Helo, n.name+".test")
		}
		hdr, _, _ := strings.Cut(tx.Body, "\r\n\r\n")
		if first := firstField(tx.Body); !strings.HasPrefix(first, "Received: ") || !strings.Contains(first, " by "+n.name+".test ") || !strings.Contains(first, " with ESMTPSA ") {
			t.Errorf("%s at %s: first header is not our Received: with ESMTPSA:\n%s", subject, m.addr, hdr)
		}
		if headerCount(tx.Body, "Message-ID") != 1 || headerCount(tx.Body, "Date") != 1 {
			t.Errorf("%s at %s: want one Message-ID and one Date added:\n%s", subject, m.addr, hdr)
		}
	}
	check(remote, "from-go", "x@remote.test", "y@remote.test")
	check(other, "from-go", "z@other.test")
	check(remote, "from-python", "p@remote.test")

	// A message that has its own Message-ID and Date keeps them.
	own := "From: <" + alice + ">\r\nSubject: own-id\r\nMessage-ID: <own@client.test>\r\nDate: Mon, 2 Jan 2006 15:04:05 +0000\r\n\r\nhi\r\n"
	mustSubmit(t, n, alice, alicePass, []string{"x@remote.test"}, own)
	waitFor(t, 30*time.Second, "own-id at the MX", deliveredOnce(remote, "own-id"))
	body := remote.with("own-id")[0].Body
	if headerCount(body, "Message-ID") != 1 || !strings.Contains(body, "Message-ID: <own@client.test>") || headerCount(body, "Date") != 1 {
		t.Errorf("a message with its own Message-ID and Date was changed:\n%s", body)
	}
}

// TestOutboundMXPreference: the MX hosts are tried in preference order,
// past one that is down; a domain without MX gets its mail at its A
// record.
func TestOutboundMXPreference(t *testing.T) {
	t.Parallel()
	e := newOutbound(t, 1)
	n := e.c.nodes[0]
	best, second, third, byA := e.mta(2), e.mta(3), e.mta(4), e.mta(5)
	best.stop() // the best MX is down: connection refused
	e.dns.set(t, "remote.test", "MX 30 mx3.remote.test.", "MX 10 mx1.remote.test.", "MX 20 mx2.remote.test.")
	e.dns.set(t, "mx1.remote.test", "A "+loIP(2))
	e.dns.set(t, "mx2.remote.test", "A "+loIP(3))
	e.dns.set(t, "mx3.remote.test", "A "+loIP(4))
	e.dns.set(t, "nomx.test", "A "+loIP(5)) // exists, but has no MX

	mustSubmit(t, n, alice, alicePass, []string{"u@remote.test"}, bare(alice, "best-down"))
	mustSubmit(t, n, alice, alicePass, []string{"u@nomx.test"}, bare(alice, "a-record"))
	waitFor(t, 30*time.Second, "delivery through the second MX and the A record", allOf(deliveredOnce(second, "best-down"), deliveredOnce(byA, "a-record")))
	waitFor(t, 10*time.Second, "an empty queue", queueEmpty(t, n))
	holds(t, 3*retryPeriod, "one delivery each", allOf(sameTransactions(second), sameTransactions(byA), sameTransactions(third), queueEmpty(t, n)))
	if txs := third.transactions(); len(txs) > 0 {
		t.Errorf("the third MX was used although the second took the message:%s", transactionsString(txs))
	}

	// The best MX back up gets the next message.
	best.start()
	mustSubmit(t, n, alice, alicePass, []string{"u@remote.test"}, bare(alice, "best-up"))
	waitFor(t, 30*time.Second, "delivery through the best MX", deliveredOnce(best, "best-up"))
	if second.deliveries("best-up") != 0 || third.deliveries("best-up") != 0 {
		t.Errorf("best-up went to a less preferred MX too")
	}
}

// TestOutboundTempFailThenAccept: 4xx at the end of DATA for the first
// attempts, then 250: delivered exactly once, and the queue is empty.
func TestOutboundTempFailThenAccept(t *testing.T) {
	t.Parallel()
	e := newOutbound(t, 1)
	n := e.c.nodes[0]
	m := e.mta(2)
	e.dns.mx(t, "remote.test", loIP(2))
	const refusals = 3
	seen := 0
	m.setData(func(transaction) error {
		if seen++; seen <= refusals {
			return smtpReply(451, "4.3.0 greylisted, try again later")
		}
		return nil
	})
	id := mustSubmit(t, n, alice, alicePass, []string{"u@remote.test"}, bare(alice, "greylisted"))

	// While deferred, the queue shows why.
	waitFor(t, 20*time.Second, "the deferral in the queue", func() error {
		qe, err := n.client().QueueEntry(ctx(t), id)
		if err != nil {
			return err
		}
		if r := qe.Recipients[0]; r.State != "pending" || !r.Remote || !strings.Contains(r.LastReply, "greylisted") {
			return fmt.Errorf("recipient %+v", r)
		}
		return nil
	})
	waitFor(t, 30*time.Second, "the delivery", deliveredOnce(m, "greylisted"))
	waitFor(t, 10*time.Second, "an empty queue", queueEmpty(t, n))
	if got := len(m.with("greylisted")); got != refusals+1 {
		t.Errorf("%d transactions, want %d refused then one accepted:%s", got, refusals, transactionsString(m.transactions()))
	}
	holds(t, 3*retryPeriod, "one delivery", allOf(deliveredOnce(m, "greylisted"), sameTransactions(m), queueEmpty(t, n)))
	if msgs, _ := inbox(t, n, alice); len(msgs) != 0 {
		t.Errorf("the sender got %d messages (a DSN?) for a delivered message", len(msgs))
	}
}

// TestOutboundBounce: a 5xx at RCPT bounces to the sender, a local
// account, with an RFC 3464 report; in a transaction where one recipient
// is taken and one refused, only the refused one bounces.
func TestOutboundBounce(t *testing.T) {
	t.Parallel()
	e := newOutbound(t, 1)
	n := e.c.nodes[0]
	m := e.mta(2)
	e.dns.mx(t, "remote.test", loIP(2))
	m.setRcpt(func(to string) error {
		if strings.HasPrefix(to, "nouser") {
			return smtpReply(550, "5.1.1 <"+to+">: Recipient address rejected: User unknown in virtual mailbox table")
		}
		return nil
	})

	mustSubmit(t, n, alice, alicePass, []string{"nouser@remote.test"}, bare(alice, "bounce-me"))
	mustSubmit(t, n, bob, bobPass, []string{"good@remote.test", "nouser2@remote.test"}, bare(bob, "mixed"))

	r := parseDSN(t, waitInbox(t, n, alice, 1, 30*time.Second)[0])
	if len(r.recipients) != 1 {
		t.Errorf("bounce for one recipient has %d groups: %+v", len(r.recipients), r.recipients)
	}
	expectFields(t, r.recipient(t, "nouser@remote.test"), map[string]string{
		"Action": "failed", "Status": "5.1.1", "Remote-MTA": "dns; mx.remote.test",
		"Diagnostic-Code": "~smtp; 550 5.1.1 <nouser@remote.test>: Recipient address rejected: User unknown in virtual mailbox table",
	})
	if !strings.Contains(r.headers, "Subject: bounce-me") || !strings.Contains(r.headers, "From: <"+alice+">") {
		t.Errorf("the bounce lacks the original headers:\n%s", r.headers)
	}
	if !strings.Contains(r.header.Get("From"), "MAILER-DAEMON") || !strings.Contains(r.header.Get("To"), alice) {
		t.Errorf("bounce From %q To %q", r.header.Get("From"), r.header.Get("To"))
	}
	if r.header.Get("Auto-Submitted") == "" {
		t.Errorf("bounce without Auto-Submitted")
	}
	for _, tx := range m.with("") {
		if slices.Contains(tx.Refused, "nouser@remote.test") && (tx.Code != 0 || len(tx.Rcpts) > 0) {
			t.Errorf("the transaction for nouser@remote.test went on to DATA after its only recipient was refused:%s", transactionsString(m.transactions()))
		}
	}

	// Mixed: one transaction, one recipient taken, one refused.
	waitFor(t, 30*time.Second, "mixed at the MX", deliveredOnce(m, "mixed"))
	tx := m.with("mixed")[0]
	if !slices.Equal(tx.Rcpts, []string{"good@remote.test"}) || !slices.Equal(tx.Refused, []string{"nouser2@remote.test"}) || tx.From != bob {
		t.Errorf("mixed transaction: from <%s> rcpts %v refused %v", tx.From, tx.Rcpts, tx.Refused)
	}
	r = parseDSN(t, waitInbox(t, n, bob, 1, 30*time.Second)[0])
	if len(r.recipients) != 1 {
		t.Errorf("mixed bounce names %d recipients, want only the refused one: %+v", len(r.recipients), r.recipients)
	}
	expectFields(t, r.recipient(t, "nouser2@remote.test"), map[string]string{"Action": "failed", "Status": "5.1.1", "Diagnostic-Code": "~User unknown"})
	if !strings.Contains(r.headers, "Subject: mixed") {
		t.Errorf("the bounce lacks the original headers:\n%s", r.headers)
	}

	waitFor(t, 10*time.Second, "an empty queue", queueEmpty(t, n))
	holds(t, 3*retryPeriod, "one bounce each, one delivery", allOf(inboxHas(t, n, alice, 1), inboxHas(t, n, bob, 1), sameTransactions(m), queueEmpty(t, n)))
}

// TestOutboundDelayThenBounce: the remote MX is down. After
// --delay-warning the sender gets one delay notice; after --queue-lifetime
// one bounce, and the message leaves the queue.
func TestOutboundDelayThenBounce(t *testing.T) {
	t.Parallel()
	const warn, lifetime = 2 * time.Second, 8 * time.Second
	e := newOutbound(t, 1, "--delay-warning", warn.String(), "--queue-lifetime", lifetime.String())
	n := e.c.nodes[0]
	e.dns.mx(t, "down.test", loIP(2)) // nothing listens there

	start := time.Now()
	id := mustSubmit(t, n, alice, alicePass, []string{"u@down.test"}, bare(alice, "never-arrives"))
	msgs := waitInbox(t, n, alice, 1, 30*time.Second)
	if el := time.Since(start); el < warn {
		t.Errorf("delay notice after %v, before --delay-warning %v", el, warn)
	}
	d := parseDSN(t, msgs[0])
	expectFields(t, d.recipient(t, "u@down.test"), map[string]string{"Action": "delayed", "Status": "~4.", "Will-Retry-Until": "~"})
	if !strings.Contains(d.headers, "Subject: never-arrives") {
		t.Errorf("the delay notice lacks the original headers:\n%s", d.headers)
	}
	qe, err := n.client().QueueEntry(ctx(t), id)
	if err != nil {
		t.Fatalf("the message left the queue with the delay notice: %v", err)
	}
	if !qe.DelayNotified {
		t.Errorf("queue entry not marked as notified: %+v", qe)
	}

	msgs = waitInbox(t, n, alice, 2, lifetime+30*time.Second)
	if el := time.Since(start); el < lifetime {
		t.Errorf("bounce after %v, before --queue-lifetime %v", el, lifetime)
	}
	b := parseDSN(t, msgs[1])
	expectFields(t, b.recipient(t, "u@down.test"), map[string]string{"Action": "failed", "Status": "4.4.7", "Diagnostic-Code": "~connection refused"})
	if again := parseDSN(t, msgs[0]); again.recipients[0]["action"] != "delayed" {
		t.Errorf("first notice is not the delay notice: %+v", again.recipients)
	}
	waitFor(t, 10*time.Second, "an empty queue", queueEmpty(t, n))
	holds(t, 3*retryPeriod, "exactly one delay notice and one bounce", allOf(inboxHas(t, n, alice, 2), queueEmpty(t, n)))
}

// TestOutboundNullMX: a domain with a null MX (RFC 7505) bounces at the
// first attempt, without connecting anywhere, not even to its A record.
func TestOutboundNullMX(t *testing.T) {
	t.Parallel()
	// An hour between attempts: a bounce within the test proves the first
	// attempt decided.
	e := newOutbound(t, 1, "--retry-schedule", "1h")
	n := e.c.nodes[0]
	m := e.mta(2)
	e.dns.set(t, "nullmx.test", "MX 0 .", "A "+loIP(2))

	mustSubmit(t, n, alice, alicePass, []string{"u@nullmx.test"}, bare(alice, "to-null-mx"))
	r := parseDSN(t, waitInbox(t, n, alice, 1, 30*time.Second)[0])
	expectFields(t, r.recipient(t, "u@nullmx.test"), map[string]string{"Action": "failed", "Status": "5.1.10", "Diagnostic-Code": "~null MX"})
	waitFor(t, 10*time.Second, "an empty queue", queueEmpty(t, n))
	if txs := m.transactions(); len(txs) > 0 {
		t.Errorf("a null MX domain's A record was tried:%s", transactionsString(txs))
	}
}

// TestOutboundNullSender: a message with the null sender (a bounce, here
// one an alias forwards out) that the remote refuses makes no DSN and
// leaves the queue.
func TestOutboundNullSender(t *testing.T) {
	t.Parallel()
	e := newOutbound(t, 1)
	n := e.c.nodes[0]
	m := e.mta(2)
	e.dns.mx(t, "remote.test", loIP(2))
	m.setRcpt(func(to string) error { return smtpReply(550, "5.1.1 no such user") })
	if out, err := cli(t, n, "alias", "add", "fwd@"+obDomain, "x@remote.test"); err != nil {
		t.Fatalf("alias add: %v\n%s", err, out)
	}

	if code, text, err := send(n.smtp, "", []string{"fwd@" + obDomain}, message("null-sender")); err != nil || code != 250 {
		t.Fatalf("MAIL FROM:<> to the alias: %d %s %v", code, text, err)
	}
	waitFor(t, 30*time.Second, "the attempt at the MX", func() error {
		if txs := m.transactions(); len(txs) == 0 {
			return fmt.Errorf("no transaction yet")
		}
		return nil
	})
	tx := m.transactions()[0]
	if tx.From != "" || !slices.Equal(tx.Refused, []string{"x@remote.test"}) {
		t.Errorf("forwarded with the envelope from <%s>, refused %v; want the null sender kept", tx.From, tx.Refused)
	}
	waitFor(t, 10*time.Second, "an empty queue", queueEmpty(t, n))
	// No DSN is ever queued: the queue stays empty, nothing lands in a
	// mailbox and nothing more goes out.
	holds(t, 3*retryPeriod, "no DSN", allOf(queueEmpty(t, n), sameTransactions(m), inboxHas(t, n, alice, 0), inboxHas(t, n, bob, 0)))
}

// TestOutboundFailover: the node delivering a deferred message dies; the
// leader hands its remote recipients to a live holder of the body, which
// delivers once the remote accepts. The dead node, back, does not deliver
// it again.
func TestOutboundFailover(t *testing.T) {
	t.Parallel()
	e := newOutbound(t, 3, "--reassign-after", "2s")
	m := e.mta(2)
	e.dns.mx(t, "remote.test", loIP(2))
	m.setRcpt(func(string) error { return smtpReply(451, "4.7.1 try later") })

	// Accept through a follower, so killing it does not also cost an election.
	st, err := e.c.nodes[0].client().Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var a *node
	var rest []*node
	for _, nd := range e.c.nodes {
		if a == nil && nd.name != st.Leader {
			a = nd
		} else {
			rest = append(rest, nd)
		}
	}
	id := mustSubmit(t, a, alice, alicePass, []string{"u@remote.test"}, bare(alice, "failover"))
	waitFor(t, 30*time.Second, "a deferred attempt", func() error {
		if len(m.transactions()) == 0 {
			return fmt.Errorf("no attempt yet")
		}
		return nil
	})
	show := func(via *node) api.QueueEntry {
		t.Helper()
		out, err := cli(t, via, "queue", "show", id, "--json")
		if err != nil {
			t.Fatalf("queue show: %v\n%s", err, out)
		}
		var qe api.QueueEntry
		if err := json.Unmarshal([]byte(out), &qe); err != nil {
			t.Fatalf("queue show --json: %v\n%s", err, out)
		}
		return qe
	}
	qe := show(rest[0])
	if qe.Recipients[0].Node != a.name || !slices.Contains(qe.Holders, a.name) || len(qe.Holders) < 2 {
		t.Fatalf("entry accepted by %s: %+v", a.name, qe)
	}
	a.kill()
	var to string
	waitFor(t, 30*time.Second, "reassignment to a live holder", func() error {
		qe := show(rest[0])
		r := qe.Recipients[0]
		if r.Node == a.name || !slices.Contains(qe.Holders, r.Node) {
			return fmt.Errorf("recipient on %s, holders %v", r.Node, qe.Holders)
		}
		to = r.Node
		return nil
	})
	t.Logf("%s's recipient moved to %s", a.name, to)
	m.setRcpt(nil)
	waitFor(t, 30*time.Second, "the delivery", deliveredOnce(m, "failover"))
	waitFor(t, 10*time.Second, "an empty queue", queueEmpty(t, rest[0]))

	// The dead node comes back with the entry still assigned to it in its
	// stale replica: it must not deliver again, neither before nor after
	// catching up. Several retry periods with one delivery.
	a.start()
	a.waitReady(60 * time.Second)
	// Ready means caught up with the commit index the node has heard of;
	// a heartbeat can tell it one that is older than the leader's, so its
	// replica may still show the entry for a moment. A second delivery in
	// that moment would still be counted below.
	waitFor(t, 30*time.Second, "the old node's replica catches up", queueEmpty(t, a))
	holds(t, 5*retryPeriod, "one delivery after the old node's return", allOf(deliveredOnce(m, "failover"), sameTransactions(m), queueEmpty(t, a)))
	if msgs, _ := inbox(t, rest[0], alice); len(msgs) != 0 {
		t.Errorf("the sender got %d messages (a DSN?) for a delivered message", len(msgs))
	}
}

// TestOutboundQueueCommands drives the queue with the real binary: list,
// show, retry (an attempt now, not in an hour), bounce (a DSN to the
// sender) and delete (no DSN).
func TestOutboundQueueCommands(t *testing.T) {
	t.Parallel()
	e := newOutbound(t, 1, "--retry-schedule", "1h")
	n := e.c.nodes[0]
	m := e.mta(2)
	e.dns.mx(t, "remote.test", loIP(2))
	m.setRcpt(func(to string) error { return smtpReply(451, "4.2.0 mailbox busy, come back later") })
	run := func(args ...string) string {
		t.Helper()
		out, err := cli(t, n, args...)
		if err != nil {
			t.Fatalf("clustermail %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	attempts := func(rcpt string) int {
		c := 0
		for _, tx := range m.transactions() {
			if slices.Contains(tx.Refused, rcpt) || slices.Contains(tx.Rcpts, rcpt) {
				c++
			}
		}
		return c
	}
	attemptsAre := func(rcpt string, want int) func() error {
		return func() error {
			if got := attempts(rcpt); got != want {
				return fmt.Errorf("%d attempts for %s, want %d:%s", got, rcpt, want, transactionsString(m.transactions()))
			}
			return nil
		}
	}

	id1 := mustSubmit(t, n, alice, alicePass, []string{"one@remote.test"}, bare(alice, "held-1"))
	id2 := mustSubmit(t, n, alice, alicePass, []string{"two@remote.test"}, bare(alice, "held-2"))
	waitFor(t, 30*time.Second, "a first attempt of each", allOf(attemptsAre("one@remote.test", 1), attemptsAre("two@remote.test", 1)))

	waitFor(t, 10*time.Second, "queue list to show both, deferred", func() error {
		out := run("queue", "list")
		if !strings.Contains(out, id1) || !strings.Contains(out, id2) || !strings.Contains(out, alice) {
			return fmt.Errorf("queue list:\n%s", out)
		}
		return nil
	})
	waitFor(t, 10*time.Second, "queue show to show the deferral", func() error {
		out := run("queue", "show", id1)
		for _, w := range []string{id1, "one@remote.test", "pending", "mailbox busy", n.name} {
			if !strings.Contains(out, w) {
				return fmt.Errorf("queue show lacks %q:\n%s", w, out)
			}
		}
		return nil
	})

	// retry: an attempt now instead of in an hour, for that entry only.
	if out := run("queue", "retry", id1); !strings.Contains(out, "retry") {
		t.Errorf("queue retry: %s", out)
	}
	waitFor(t, 15*time.Second, "the retried attempt", attemptsAre("one@remote.test", 2))
	holds(t, 2*time.Second, "no attempt of the other entry", attemptsAre("two@remote.test", 1))

	// bounce: the sender gets a DSN, the entry leaves.
	run("queue", "bounce", id1)
	r := parseDSN(t, waitInbox(t, n, alice, 1, 30*time.Second)[0])
	expectFields(t, r.recipient(t, "one@remote.test"), map[string]string{"Action": "failed", "Status": "~5."})
	if !strings.Contains(r.headers, "Subject: held-1") {
		t.Errorf("operator bounce lacks the original headers:\n%s", r.headers)
	}
	// delete: gone, and nobody is told.
	if out := run("queue", "delete", id2); !strings.Contains(out, id2) {
		t.Errorf("queue delete: %s", out)
	}
	waitFor(t, 10*time.Second, "an empty queue", queueEmpty(t, n))
	if out := run("queue", "list"); !strings.Contains(out, "empty") {
		t.Errorf("queue list after bounce and delete:\n%s", out)
	}
	if out, err := cli(t, n, "queue", "show", id2); err == nil {
		t.Errorf("queue show of a deleted entry succeeded:\n%s", out)
	}
	holds(t, 3*time.Second, "no DSN for the deleted entry, no more attempts", allOf(inboxHas(t, n, alice, 1), sameTransactions(m), queueEmpty(t, n)))
}
