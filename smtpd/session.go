package smtpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"clustermail/routing"
)

// session is one SMTP conversation, from EHLO to QUIT.
type session struct {
	s       *Server
	conn    *smtp.Conn
	cc      *countingConn // nil when the listener is not ours (tests)
	remote  string
	from    string
	hasFrom bool
	rcpts   []string // as given, for the Received header
	targets []routing.Target
	account string // the authenticated account, submission only
	sent    int    // messages accepted in this session (limits.go)
}

func smtpErr(code int, enh smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: fmt.Sprintf(format, args...)}
}

func (s *session) Reset() {
	s.from, s.hasFrom, s.rcpts, s.targets = "", false, nil, nil
	if s.cc != nil {
		s.cc.inData.Store(false) // go-smtp resets once the message is read
	}
}

func (s *session) Logout() error { return nil }

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if err := s.checkMail(); err != nil {
		return err
	}
	var size int64
	if opts != nil {
		size = opts.Size
	}
	if err := s.s.router.Room(size); err != nil {
		s.s.log.Warn("mail refused: disk nearly full", "remote", s.remote, "err", err)
		return smtpErr(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage, try again later")
	}
	if s.hasFrom {
		// go-smtp would keep the recipients it counted while Reset drops
		// ours: refuse, as RFC 5321 4.1.4 allows (RSET first).
		return smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "Nested MAIL command")
	}
	if from != "" && !plausibleAddress(from) {
		return smtpErr(553, smtp.EnhancedCode{5, 1, 7}, "Bad sender address syntax")
	}
	s.Reset()
	s.from, s.hasFrom = from, true
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !plausibleAddress(to) {
		return smtpErr(553, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax")
	}
	targets, err := s.resolve(to)
	switch {
	case errors.Is(err, routing.ErrNotHosted):
		// No open relay: an unauthenticated client may only send to the
		// domains the cluster hosts.
		return smtpErr(554, smtp.EnhancedCode{5, 7, 1}, "Relay access denied: %s is not a domain hosted here", domainOf(to))
	case errors.Is(err, routing.ErrNoSuchUser):
		return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "No such user here")
	case err != nil:
		s.s.log.Error("rcpt lookup failed", "rcpt", to, "err", err)
		return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Temporary directory failure, try again later")
	}
	s.rcpts = append(s.rcpts, to)
	for _, t := range targets {
		dup := false
		for _, have := range s.targets {
			if have.Addr == t.Addr {
				dup = true
			}
		}
		if !dup {
			s.targets = append(s.targets, t)
		}
	}
	return nil
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (s *session) Data(r io.Reader) error {
	if len(s.targets) == 0 {
		return smtpErr(554, smtp.EnhancedCode{5, 5, 1}, "No valid recipients")
	}
	if s.cc != nil {
		s.cc.inData.Store(true)
	}
	id := routing.NewID()
	buf := bufPool.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 4<<20 {
			buf.Reset()
			bufPool.Put(buf)
		}
	}()
	buf.Reset()
	s.writeReceived(buf, id)
	rcvd := buf.Len() // our Received field; the sender's message follows
	// With BDAT, go-smtp calls Data in a goroutine of its own and feeds it
	// through a pipe, chunk by chunk; the chunks are counted in octets, so
	// the session never loses its footing.
	_, bdat := r.(*io.PipeReader)
	sr := &strictReader{r: r, max: s.s.cfg.MaxLineLength}
	if _, err := buf.ReadFrom(sr); err != nil {
		var se *smtp.SMTPError
		var ne net.Error
		switch {
		case !bdat && (errors.Is(err, smtp.ErrTooLongLine) || errors.Is(err, errLineTooLong)):
			// go-smtp's own line limit (the same as ours) has failed or
			// will fail its reader for good: say why, then close.
			s.s.log.Info("message refused", "queue_id", id, "remote", s.remote, "reason", "line too long")
			s.closeWith(500, smtp.EnhancedCode{5, 5, 2}, "Line too long in message, closing connection")
			return errLineTooLong
		case errors.As(err, &se):
			// go-smtp discards the rest of the data; the session goes on.
			s.s.log.Info("message refused", "queue_id", id, "remote", s.remote, "reason", se.Message)
			return se
		case !bdat && errors.As(err, &ne) && ne.Timeout():
			// Where the data would have ended is unknown: what follows
			// must not be read as commands.
			s.s.log.Info("message not received: timeout", "queue_id", id, "remote", s.remote)
			s.closeWith(421, smtp.EnhancedCode{4, 4, 2}, "Timeout reading the message, closing connection")
			return err
		}
		s.s.log.Info("message not received", "queue_id", id, "remote", s.remote, "err", err)
		return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Error reading the message")
	}
	if s.cc != nil && s.cc.eof.Load() {
		// go-smtp ends a BDAT chunk cut short by the client's close as if
		// it were whole: never queue such a message.
		s.s.log.Info("message not received: connection closed", "queue_id", id, "remote", s.remote)
		return smtpErr(451, smtp.EnhancedCode{4, 4, 2}, "Connection closed before the end of the message")
	}
	msg := buf.Bytes()
	// Bounds first: a message about to be refused is not worth signing.
	if err := checkHeaders(msg); err != nil {
		s.s.log.Info("message refused", "queue_id", id, "remote", s.remote, "reason", err)
		return err
	}
	if s.account != "" {
		msg = completeHeaders(msg, s.s.cfg.Hostname, id, time.Now())
		msg = s.sign(msg, id)
	}
	msg, authErr := s.checkAuth(id, msg, rcvd)
	if authErr != nil {
		return authErr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.s.router.Accept(ctx, id, s.from, s.targets, msg); err != nil {
		return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Message not queued, try again later (%s)", id)
	}
	s.accepted()
	return smtpErr(250, smtp.EnhancedCode{2, 0, 0}, "OK: queued as %s", id)
}

// closeWith sends a last reply and closes the connection, for when the
// client and the server no longer agree on where the data ends. go-smtp's
// own replies after that fail on the closed connection.
func (s *session) closeWith(code int, enh smtp.EnhancedCode, msg string) {
	c := s.conn.Conn()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = fmt.Fprintf(c, "%d %d.%d.%d %s\r\n", code, enh[0], enh[1], enh[2], msg)
	_ = c.Close()
}

// writeReceived adds the trace header (RFC 5321 4.4). The recipient is
// named only when there is one, so a copy does not reveal the others.
func (s *session) writeReceived(w *bytes.Buffer, id string) {
	host, _, _ := net.SplitHostPort(s.remote)
	helo := sanitize(s.conn.Hostname())
	// RFC 3848: S for TLS, A for an authenticated client.
	proto := "ESMTP"
	if _, ok := s.conn.TLSConnectionState(); ok {
		proto += "S"
	}
	if s.account != "" {
		proto += "A"
	}
	fmt.Fprintf(w, "Received: from %s ([%s])\r\n\tby %s (clustermail) with %s id %s", helo, host, s.s.cfg.Hostname, proto, id)
	if len(s.rcpts) == 1 {
		fmt.Fprintf(w, "\r\n\tfor <%s>", sanitize(s.rcpts[0]))
	}
	fmt.Fprintf(w, ";\r\n\t%s\r\n", time.Now().Format(time.RFC1123Z))
}

// sanitize keeps client-supplied text from breaking the header.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r == 0x7f || r == '(' || r == ')' || r == ';' {
			return -1
		}
		return r
	}, s)
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return addr
}

// plausibleAddress is a cheap syntax check before any lookup; the
// directory does the real validation. Control characters (NUL included)
// are refused here: go-smtp echoes an accepted sender in its reply.
func plausibleAddress(a string) bool {
	i := strings.LastIndexByte(a, '@')
	return i > 0 && i < len(a)-1 && len(a) <= 254 && utf8.ValidString(a) && !strings.ContainsAny(a, " <>") &&
		!strings.ContainsFunc(a, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
