// Package smtpload is an SMTP load generator for benchmarks: it sends a
// fixed number of messages over a number of concurrent sessions to one or
// more SMTP servers and measures the accepted rate, the latency from the
// final "." to the server's reply, and the errors by reply code.
//
// It speaks SMTP itself, over a plain TCP connection, without pipelining,
// like Postfix's smtp-source: one command, one reply. A hand-written client
// keeps the measured interval exact (the clock starts when ".\r\n" is
// written, after the body has been flushed, and stops when the reply is
// read) and keeps the generator's own cost small and constant.
package smtpload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one load run.
type Config struct {
	Targets  []string // host:port of the servers
	Random   bool     // pick a target at random for each connection (default: round-robin)
	Sessions int      // concurrent SMTP sessions
	Messages int      // messages to send in total
	Size     int      // approximate message size in bytes, headers included
	From     string   // envelope sender
	Rcpts    []string // recipients, one per message, taken round-robin
	// Reuse sends several messages per connection (RSET-free: MAIL follows
	// the previous 250); otherwise every message has its own connection,
	// with QUIT after it.
	Reuse bool
	// PerConn caps the messages sent over one connection when Reuse is
	// set; 0 means no cap.
	PerConn int
	// OneWrite sends the body and the final ".\r\n" in one write, as
	// smtp-source does, and starts the latency clock at that write (the
	// latency then includes the server reading the body). By default the
	// dot goes on its own once the body is flushed, so the clock starts
	// exactly at the dot. Measured on loopback, the two make no difference
	// to throughput beyond the noise.
	OneWrite bool
	Helo     string        // EHLO name
	Timeout  time.Duration // for each reply
	// Rate paces the load (messages per second over all sessions; 0: as
	// fast as the server answers). Message n starts no earlier than n/Rate
	// seconds after the start, so latency is measured at a known load
	// rather than at saturation, where it only measures queueing.
	Rate float64
}

func (c *Config) defaults() error {
	if len(c.Targets) == 0 {
		return errors.New("no target")
	}
	if len(c.Rcpts) == 0 {
		return errors.New("no recipient")
	}
	if c.Sessions <= 0 {
		c.Sessions = 1
	}
	if c.Messages <= 0 {
		return errors.New("messages must be positive")
	}
	if c.Helo == "" {
		c.Helo = "client.test"
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Minute
	}
	return nil
}

// Result is what a run measured.
type Result struct {
	Targets  []string `json:"targets"`
	Sessions int      `json:"sessions"`
	Messages int      `json:"messages"`
	Size     int      `json:"size"`
	Reuse    bool     `json:"reuse"`

	Accepted    int            `json:"accepted"`    // 250 after the final "."
	Failed      int            `json:"failed"`      // messages not accepted, for any reason
	Errors      map[string]int `json:"errors"`      // by stage and reply code, e.g. "DATA-END 451", or "connect"
	Connections int            `json:"connections"` // connections opened

	Start     time.Time `json:"start"`
	AcceptS   float64   `json:"accept_s"`   // from the first connect to the last reply (QUIT included)
	AcceptMPS float64   `json:"accept_mps"` // Accepted / AcceptS

	// Latency from writing the final ".\r\n" to reading the reply, over the
	// accepted messages, in milliseconds.
	Latency Percentiles `json:"latency_ms"`
	// Transaction latency: from MAIL FROM to the reply after ".", over the
	// accepted messages, in milliseconds.
	TxnLatency Percentiles `json:"txn_latency_ms"`

	// Filled by WaitDelivered.
	Delivered  int64   `json:"delivered,omitempty"`
	DeliverS   float64 `json:"deliver_s,omitempty"`   // from Start until the count reached Accepted (or gave up)
	DeliverMPS float64 `json:"deliver_mps,omitempty"` // Delivered / DeliverS
	DrainS     float64 `json:"drain_s,omitempty"`     // from Start until the server's queue was empty, when known
	Note       string  `json:"note,omitempty"`
}

// Percentiles summarises a latency distribution in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func percentiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	slices.Sort(d)
	at := func(q float64) float64 {
		i := int(q*float64(len(d))+0.5) - 1
		i = max(0, min(i, len(d)-1))
		return float64(d[i]) / float64(time.Millisecond)
	}
	return Percentiles{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: float64(d[len(d)-1]) / float64(time.Millisecond)}
}

// Run sends cfg.Messages messages and returns the measurements. It returns
// an error only for a bad configuration or a cancelled context; failures of
// the server are counted in the result.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.defaults(); err != nil {
		return Result{}, err
	}
	res := Result{Targets: cfg.Targets, Sessions: cfg.Sessions, Messages: cfg.Messages, Size: cfg.Size, Reuse: cfg.Reuse,
		Errors: map[string]int{}}
	var next atomic.Int64  // next message number to claim
	var conns atomic.Int64 // connections opened, also the round-robin cursor
	var mu sync.Mutex      // guards res.Errors and the merge below
	var lat, txn []time.Duration
	var accepted, failed int
	var wg sync.WaitGroup
	res.Start = time.Now()
	for w := 0; w < cfg.Sessions; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			s := &sender{cfg: &cfg, start: res.Start, rng: rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano()))), errs: map[string]int{}}
			s.run(ctx, &next, &conns)
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, s.lat...)
			txn = append(txn, s.txn...)
			accepted += s.accepted
			failed += s.failed
			for k, v := range s.errs {
				res.Errors[k] += v
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(res.Start)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.Accepted, res.Failed, res.Connections = accepted, failed, int(conns.Load())
	res.AcceptS = elapsed.Seconds()
	res.AcceptMPS = float64(accepted) / res.AcceptS
	res.Latency = percentiles(lat)
	res.TxnLatency = percentiles(txn)
	return res, nil
}

// sender is one session's loop: it claims messages one at a time and
// sends them, opening connections as needed.
type sender struct {
	cfg      *Config
	start    time.Time
	rng      *rand.Rand
	conn     net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	sent     int // messages on the current connection
	lat, txn []time.Duration
	accepted int
	failed   int
	errs     map[string]int
	body     []byte
}

func (s *sender) run(ctx context.Context, next, conns *atomic.Int64) {
	defer s.close(true)
	for ctx.Err() == nil {
		n := int(next.Add(1)) - 1
		if n >= s.cfg.Messages {
			return
		}
		if s.cfg.Rate > 0 {
			at := s.start.Add(time.Duration(float64(n) / s.cfg.Rate * float64(time.Second)))
			if d := time.Until(at); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				}
			}
		}
		if s.conn == nil {
			if err := s.open(conns); err != nil {
				s.failed++
				continue
			}
		}
		if err := s.send(n); err != nil {
			s.failed++
			s.close(false)
			continue
		}
		s.sent++
		if !s.cfg.Reuse || (s.cfg.PerConn > 0 && s.sent >= s.cfg.PerConn) {
			s.close(true)
		}
	}
}

// stageError is a failed step: the stage and the reply code, or the I/O
// error when there was no reply.
type stageError struct {
	stage string
	code  int
	err   error
}

func (e *stageError) Error() string {
	if e.code != 0 {
		return fmt.Sprintf("%s %d", e.stage, e.code)
	}
	return fmt.Sprintf("%s: %v", e.stage, e.err)
}

func (s *sender) fail(stage string, code int, err error) error {
	key := stage + " " + strconv.Itoa(code)
	if code == 0 {
		key = stage + " " + ioClass(err)
	}
	s.errs[key]++
	return &stageError{stage: stage, code: code, err: err}
}

func ioClass(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed"
	case strings.Contains(err.Error(), "refused"):
		return "refused"
	case strings.Contains(err.Error(), "reset"):
		return "reset"
	}
	return "io"
}

func (s *sender) open(conns *atomic.Int64) error {
	k := int(conns.Add(1)) - 1
	target := s.cfg.Targets[k%len(s.cfg.Targets)]
	if s.cfg.Random {
		target = s.cfg.Targets[s.rng.IntN(len(s.cfg.Targets))]
	}
	c, err := net.DialTimeout("tcp", target, s.cfg.Timeout)
	if err != nil {
		return s.fail("connect", 0, err)
	}
	s.conn, s.r, s.w, s.sent = c, bufio.NewReaderSize(c, 4096), bufio.NewWriterSize(c, 64<<10), 0
	if code, err := s.reply(); err != nil || code != 220 {
		s.close(false)
		return s.fail("banner", code, err)
	}
	if code, err := s.cmd("EHLO " + s.cfg.Helo); err != nil || code != 250 {
		s.close(false)
		return s.fail("EHLO", code, err)
	}
	return nil
}

// close ends the connection, politely with QUIT when asked to.
func (s *sender) close(quit bool) {
	if s.conn == nil {
		return
	}
	if quit {
		_, _ = s.cmd("QUIT")
	}
	_ = s.conn.Close()
	s.conn, s.r, s.w = nil, nil, nil
}

func (s *sender) send(n int) error {
	rcpt := s.cfg.Rcpts[n%len(s.cfg.Rcpts)]
	t0 := time.Now()
	if code, err := s.cmd("MAIL FROM:<" + s.cfg.From + ">"); err != nil || code != 250 {
		return s.fail("MAIL", code, err)
	}
	if code, err := s.cmd("RCPT TO:<" + rcpt + ">"); err != nil || code != 250 {
		if err == nil {
			_, _ = s.cmd("RSET")
		}
		return s.fail("RCPT", code, err)
	}
	if code, err := s.cmd("DATA"); err != nil || code != 354 {
		return s.fail("DATA", code, err)
	}
	s.body = message(s.body[:0], s.cfg.From, rcpt, n, s.cfg.Size)
	var t1 time.Time
	if !s.cfg.OneWrite {
		if err := s.write(s.body); err != nil {
			return s.fail("DATA-END", 0, err)
		}
		t1 = time.Now()
		if err := s.write([]byte(".\r\n")); err != nil {
			return s.fail("DATA-END", 0, err)
		}
	} else {
		t1 = time.Now()
		if err := s.write(append(s.body, ".\r\n"...)); err != nil {
			return s.fail("DATA-END", 0, err)
		}
	}
	code, err := s.reply()
	if err != nil || code != 250 {
		return s.fail("DATA-END", code, err)
	}
	now := time.Now()
	s.lat = append(s.lat, now.Sub(t1))
	s.txn = append(s.txn, now.Sub(t0))
	s.accepted++
	return nil
}

func (s *sender) write(b []byte) error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.cfg.Timeout))
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	// The body is flushed before the final dot so that the clock for the
	// dot starts with nothing else in flight.
	return s.w.Flush()
}

func (s *sender) cmd(line string) (int, error) {
	if err := s.write([]byte(line + "\r\n")); err != nil {
		return 0, err
	}
	return s.reply()
}

// reply reads one reply, multi-line or not, and returns its code.
func (s *sender) reply() (int, error) {
	_ = s.conn.SetReadDeadline(time.Now().Add(s.cfg.Timeout))
	for {
		line, err := s.r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) < 4 {
			return 0, fmt.Errorf("short reply %q", line)
		}
		code, err := strconv.Atoi(string(line[:3]))
		if err != nil {
			return 0, fmt.Errorf("bad reply %q", line)
		}
		if line[3] != '-' {
			return code, nil
		}
	}
}

// message appends a message of about size bytes to b: a few headers, then
// lines of 76 letters. No line starts with ".", so there is nothing to
// dot-stuff.
func message(b []byte, from, to string, n, size int) []byte {
	b = fmt.Appendf(b, "From: <%s>\r\nTo: <%s>\r\nSubject: clustermail bench %d\r\nMessage-Id: <%d.%d@bench.client.test>\r\nDate: %s\r\n\r\n",
		from, to, n, n, time.Now().UnixNano(), time.Now().Format(time.RFC1123Z))
	const line = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwx\r\n"
	for len(b)+len(line) <= size {
		b = append(b, line...)
	}
	if rest := size - len(b); rest > 2 {
		b = append(b, line[:rest-2]...)
		b = append(b, "\r\n"...)
	}
	if len(b) < 2 || b[len(b)-1] != '\n' {
		b = append(b, "\r\n"...)
	}
	return b
}
