package faults

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

type outcome int

const (
	pending    outcome = iota
	acked              // 250 after DATA
	refused4xx         // a 4xx reply at any stage
	refused5xx         // a 5xx reply at any stage
	noReply            // connection refused, reset or timed out: no SMTP verdict
)

func (o outcome) String() string {
	return [...]string{"pending", "acked", "4xx", "5xx", "no-reply"}[o]
}

// attempt is one SMTP transaction of the writer, with a number of its own
// (the writer never resends a number).
type attempt struct {
	n          int
	via        string
	rcpts      []string
	start, end time.Time
	result     outcome
	code       int
	stage      string // connect, greeting, mail, rcpt, data, body, dot
	reply      string
}

// writer sends a steady stream of numbered messages to random nodes.
type writer struct {
	scenario string
	c        *cluster
	accounts []account
	start    time.Time

	mu       sync.Mutex
	attempts []*attempt
	stopped  bool
	wg       sync.WaitGroup
}

type account struct {
	addr, owner string
}

const (
	writerWorkers = 4
	writerPause   = 40 * time.Millisecond
	sender        = "writer@client.test"
)

func startWriter(c *cluster, scenario string, accounts []account) *writer {
	w := &writer{scenario: scenario, c: c, accounts: accounts, start: time.Now()}
	for i := 0; i < writerWorkers; i++ {
		w.wg.Add(1)
		go w.work()
	}
	c.event("writer started: %d connections to random nodes", writerWorkers)
	return w
}

// stop ends the stream and waits for the transactions in flight.
func (w *writer) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.wg.Wait()
	s := w.stats(time.Time{})
	w.c.event("writer stopped: %s", s)
}

func (w *writer) next() (*attempt, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return nil, false
	}
	a := &attempt{n: len(w.attempts) + 1}
	w.attempts = append(w.attempts, a)
	return a, true
}

func (w *writer) work() {
	defer w.wg.Done()
	for {
		a, ok := w.next()
		if !ok {
			return
		}
		n := w.c.nodes[rand.IntN(len(w.c.nodes))]
		a.via = n.name
		a.rcpts = w.pickRecipients(a.n)
		a.start = time.Now()
		code, stage, reply, err := send(n.smtp, sender, a.rcpts, w.message(a))
		w.record(a, code, stage, reply, err)
		time.Sleep(writerPause)
	}
}

// pickRecipients: one account, or for every fifth message two accounts
// owned by different nodes.
func (w *writer) pickRecipients(n int) []string {
	first := w.accounts[rand.IntN(len(w.accounts))]
	if n%5 != 0 {
		return []string{first.addr}
	}
	for {
		second := w.accounts[rand.IntN(len(w.accounts))]
		if second.owner != first.owner {
			return []string{first.addr, second.addr}
		}
	}
}

func subjectPrefix(scenario string) string { return "faults " + scenario + " #" }

func (w *writer) message(a *attempt) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s%d\r\nMessage-ID: <faults-%s-%d@client.test>\r\nDate: %s\r\n\r\n",
		sender, strings.Join(a.rcpts, ", "), subjectPrefix(w.scenario), a.n, w.scenario, a.n, time.Now().Format(time.RFC1123Z))
	for i := 0; i < 16; i++ {
		fmt.Fprintf(&b, "message %d of scenario %s, line %02d: the quick brown fox jumps over the lazy dog\r\n", a.n, w.scenario, i)
	}
	return b.String()
}

func (w *writer) record(a *attempt, code int, stage, reply string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	a.end, a.code, a.stage, a.reply = time.Now(), code, stage, reply
	switch {
	case err != nil:
		a.result, a.reply = noReply, err.Error()
	case code == 250 && stage == "dot":
		a.result = acked
	case code >= 400 && code < 500:
		a.result = refused4xx
	case code >= 500:
		a.result = refused5xx
	default:
		a.result, a.reply = noReply, fmt.Sprintf("unexpected reply %d %s", code, reply)
	}
}

// inject adds an attempt made outside the writer (through the probe, inside
// a cut-off node's network namespace), so the checker counts it too.
func (w *writer) inject(via string, rcpts []string, send func(msg string) (code int, stage, reply string, err error)) *attempt {
	a, ok := w.next()
	if !ok {
		return nil
	}
	a.via, a.rcpts, a.start = via, rcpts, time.Now()
	code, stage, reply, err := send(w.message(a))
	w.record(a, code, stage, reply, err)
	return a
}

type writerStats struct {
	sent, acked, r4, r5, noReply int
}

func (s writerStats) String() string {
	return fmt.Sprintf("sent %d, acked %d, 4xx %d, 5xx %d, no reply %d", s.sent, s.acked, s.r4, s.r5, s.noReply)
}

// stats counts the attempts that ended after since.
func (w *writer) stats(since time.Time) writerStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	var s writerStats
	for _, a := range w.attempts {
		if a.result == pending || a.end.Before(since) {
			continue
		}
		s.sent++
		switch a.result {
		case acked:
			s.acked++
		case refused4xx:
			s.r4++
		case refused5xx:
			s.r5++
		case noReply:
			s.noReply++
		}
	}
	return s
}

// waitAcks waits until n more messages are acknowledged from now on (only
// those that match, when match is not nil).
func (w *writer) waitAcks(t *testing.T, n int, d time.Duration, what string, match func(*attempt) bool) {
	t.Helper()
	since := time.Now()
	w.c.waitFor(d, fmt.Sprintf("%d acknowledged messages (%s)", n, what), func() error {
		got := w.ackedSince(since, match)
		if got < n {
			return fmt.Errorf("%d so far; %s", got, w.stats(since))
		}
		return nil
	})
	w.c.event("%d acknowledged %s in %.1fs (%s)", n, what, time.Since(since).Seconds(), w.stats(since))
}

func (w *writer) ackedSince(since time.Time, match func(*attempt) bool) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	got := 0
	for _, a := range w.attempts {
		if a.result == acked && !a.end.Before(since) && (match == nil || match(a)) {
			got++
		}
	}
	return got
}

// sawFrom reports whether a node gave a reply matching ok since a time.
func (w *writer) sawFrom(n *node, since time.Time, ok func(*attempt) bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.attempts {
		if a.result != pending && a.via == n.name && !a.end.Before(since) && ok(a) {
			return true
		}
	}
	return false
}

// send runs one SMTP transaction. A reply code comes back with a nil error;
// err is set only when no SMTP reply came (connection error, timeout).
func send(addr, from string, to []string, msg string) (code int, stage, reply string, err error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, "connect", "", err
	}
	c := smtp.NewClient(conn)
	c.CommandTimeout = 30 * time.Second
	c.SubmissionTimeout = 60 * time.Second
	defer c.Close()
	verdict := func(st string, err error) (int, string, string, error) {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se.Code, st, se.Message, nil
		}
		return 0, st, "", fmt.Errorf("%s: %w", st, err)
	}
	if err := c.Hello("writer.client.test"); err != nil {
		return verdict("greeting", err)
	}
	if err := c.Mail(from, nil); err != nil {
		return verdict("mail", err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return verdict("rcpt", err)
		}
	}
	wc, err := c.Data()
	if err != nil {
		return verdict("data", err)
	}
	if _, err := io.WriteString(wc, msg); err != nil {
		return verdict("body", err)
	}
	resp, err := wc.CloseWithResponse()
	if err != nil {
		return verdict("dot", err)
	}
	_ = c.Quit()
	return 250, "dot", resp.StatusText, nil
}
