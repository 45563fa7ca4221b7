package smtpd

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clustermail/throttle"
)

// Metrics are shared by a node's SMTP listeners, labelled by listener.
type Metrics struct {
	sessions     *prometheus.CounterVec
	active       *prometheus.GaugeVec
	replies      *prometheus.CounterVec
	refused      *prometheus.CounterVec
	authFailures *prometheus.CounterVec
}

// NewMetrics registers the SMTP metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	l := []string{"listener"}
	m := &Metrics{
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clustermail_smtp_sessions_total", Help: "SMTP sessions started."}, l),
		active:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "clustermail_smtp_connections", Help: "Open SMTP connections."}, l),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clustermail_smtp_replies_total",
			Help: "SMTP replies sent in clear text, by code (replies inside TLS are not seen here)."}, []string{"listener", "code"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clustermail_smtp_connections_refused_total",
			Help: "Connections refused because the connection limit was reached."}, l),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clustermail_smtp_auth_failures_total",
			Help: "Failed AUTH attempts."}, l),
	}
	reg.MustRegister(m.sessions, m.active, m.replies, m.refused, m.authFailures)
	return m
}

// limitListener caps concurrent connections (go-smtp has no limit) and
// wraps each connection to count the reply codes it sends, whoever writes
// them: our backend or go-smtp itself.
type limitListener struct {
	net.Listener
	sem      chan struct{}
	m        *Metrics
	name     string
	hostname string
	idle     time.Duration // read timeout while a message is transferred

	perIP       *throttle.Conns // nil: no limit per client address
	maxCommands int             // see overLimit; 0: no limit
	refuser     *throttle.Refuser
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			ip := remoteIP(c)
			if !l.perIP.Acquire(ip) {
				<-l.sem
				l.refuse(c, "Too many connections from your address")
				continue
			}
			l.m.active.WithLabelValues(l.name).Inc()
			return &countingConn{Conn: c, l: l, bol: true, idle: l.idle, ip: ip}, nil
		default:
			l.refuse(c, "Too many connections, try again later")
		}
	}
}

type countingConn struct {
	net.Conn
	l    *limitListener
	once sync.Once

	wmu  sync.Mutex
	out  []byte // replies not yet sent (see Read)
	bol  bool   // the next byte written begins a line
	code []byte

	idle     time.Duration
	ip       string
	commands atomic.Int64 // answered since the last accepted message (see limits.go)
	tls      atomic.Bool  // replies are encrypted from here on
	closing  atomic.Bool  // closed for too many commands: go-smtp's replies are dropped
	inData   atomic.Bool  // a message is being transferred: the timeout is per read
	eof      atomic.Bool  // the client has closed its side
	timedOut atomic.Bool
}

// Read enforces what go-smtp leaves out about the read timeout.
//
// While a message is transferred (inData), every read gets the whole idle
// timeout: go-smtp sets the deadline once, when it reads the DATA or BDAT
// command, which would cap the transfer of the whole message instead.
//
// A timeout is sticky: bufio.Reader.ReadLine hands go-smtp what it has of a
// line as a whole line when the read times out in the middle of it, and
// drops the error, so a client trickling a command without its CRLF
// would never be timed out. With the error repeated, go-smtp's next read
// sees it, replies 421 4.4.2 and closes.
func (c *countingConn) Read(p []byte) (int, error) {
	if c.timedOut.Load() {
		return 0, errStickyTimeout
	}
	if err := c.overLimit(); err != nil {
		return 0, err
	}
	// Replies wait in the buffer until the server reads again: SMTP is
	// request and reply, so before it waits for the client everything it
	// said must be out, and not a moment earlier. One write per batch of
	// replies instead of one per line (an EHLO answer is a dozen lines).
	if err := c.flush(); err != nil {
		return 0, err
	}
	if c.inData.Load() && c.idle > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	n, err := c.Conn.Read(p)
	if err != nil {
		var ne net.Error
		switch {
		case errors.Is(err, io.EOF):
			c.eof.Store(true)
		case errors.As(err, &ne) && ne.Timeout():
			c.timedOut.Store(true)
		}
	}
	return n, err
}

// errStickyTimeout is what reads return after one timed out.
var errStickyTimeout error = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string   { return "read timed out" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// fixedReplies corrects go-smtp's replies whose codes are not RFC 5321's.
// go-smtp writes each reply line in one Write, so they are matched whole.
var fixedReplies = map[string]string{
	// Commands out of sequence are 503 (RFC 5321 4.1.4, 4.3.2); 502 means
	// "not implemented".
	"502 5.5.1 Please introduce yourself first.":         "503 5.5.1 Send EHLO or HELO first",
	"502 5.5.1 Missing MAIL FROM command.":               "503 5.5.1 Send MAIL FROM first",
	"502 5.5.1 Missing RCPT TO command.":                 "503 5.5.1 No valid recipients: send RCPT TO first",
	"502 5.5.1 MAIL not allowed during message transfer": "503 5.5.1 MAIL not allowed during message transfer",
	"502 5.5.1 RCPT not allowed during message transfer": "503 5.5.1 RCPT not allowed during message transfer",
	"502 5.5.1 DATA not allowed during message transfer": "503 5.5.1 DATA not allowed during message transfer",
	"502 5.5.1 DATA not allowed for BINARYMIME messages": "503 5.5.1 DATA not allowed for BINARYMIME messages",
	// go-smtp says this of any line that is not a four-letter verb (and a
	// space): an unrecognised command, 500.
	"501 5.5.2 Bad command": "500 5.5.2 Syntax error, command unrecognized",
	// Unknown MAIL and RCPT parameters are 555 (RFC 5321 4.1.1.11).
	"500 5.5.4 Unknown MAIL FROM argument": "555 5.5.4 MAIL FROM parameter not recognized",
	"500 5.5.4 Unknown RCPT TO argument":   "555 5.5.4 RCPT TO parameter not recognized",
	// A line too long is a syntax error (X.5.2), not a routing one (X.4.0).
	"500 5.4.0 Too long line, closing connection": "500 5.5.2 Line too long, closing connection",
	// A server closing the connection says 421 (RFC 5321 3.8).
	"500 5.5.1 Too many errors. Quiting now": "421 4.7.0 Too many errors, closing connection",
}

// txFailed begins go-smtp's reply for an error that is not an
// *smtp.SMTPError: a read error during BDAT. It is permanent and carries
// the error's text (addresses included); the client should retry.
var txFailed = []byte("554 5.0.0 Error: transaction failed: ")

func (c *countingConn) Write(p []byte) (int, error) {
	if c.closing.Load() {
		return len(p), nil
	}
	if c.countWrite(p) {
		c.wmu.Lock()
		c.out = append(c.out, p...)
		c.wmu.Unlock()
		if err := c.flushIfBig(); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	out := p
	if c.bol && len(p) > 2 && bytes.IndexByte(p, '\n') == len(p)-1 && bytes.HasSuffix(p, []byte("\r\n")) {
		if fixed, ok := fixedReplies[string(p[:len(p)-2])]; ok {
			out = []byte(fixed + "\r\n")
		} else if bytes.HasPrefix(p, txFailed) {
			out = []byte("451 4.4.2 Error reading the message\r\n")
		} else {
			out = cleanReply(p)
		}
	}
	for _, b := range out {
		if c.bol {
			c.code = c.code[:0]
			c.bol = false
		}
		if len(c.code) < 4 {
			c.code = append(c.code, b)
			// "250 " ends a reply; "250-" is a continuation line.
			if len(c.code) == 4 && c.code[3] == ' ' {
				if _, err := strconv.Atoi(string(c.code[:3])); err == nil {
					c.l.m.replies.WithLabelValues(c.l.name, string(c.code[:3])).Inc()
					c.commands.Add(1)
				}
			}
		}
		if b == '\n' {
			c.bol = true
		}
	}
	c.wmu.Lock()
	c.out = append(c.out, out...)
	c.wmu.Unlock()
	if err := c.flushIfBig(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// flushIfBig sends the buffered replies when they are many.
func (c *countingConn) flushIfBig() error {
	c.wmu.Lock()
	big := len(c.out) >= 16<<10
	c.wmu.Unlock()
	if big {
		return c.flush()
	}
	return nil
}

// flush sends the buffered replies.
func (c *countingConn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.out)
	c.out = c.out[:0]
	return err
}

func (c *countingConn) Close() error {
	// A last reply, such as 221 or 421. A closing tls.Conn has just set
	// the write deadline to now, after queueing its close_notify: without
	// a new one the reply and the alert would be lost.
	_ = c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = c.flush()
	c.once.Do(func() {
		c.l.perIP.Release(c.ip)
		<-c.l.sem
		c.l.m.active.WithLabelValues(c.l.name).Dec()
	})
	return c.Conn.Close()
}
