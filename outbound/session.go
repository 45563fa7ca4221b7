package outbound

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"
)

// session is the client side of one SMTP connection, with only what relay
// needs: EHLO (falling back to HELO), STARTTLS, MAIL, RCPT, DATA, QUIT.
//
// It is written here rather than taken from go-smtp's Client because that
// client cannot say EHLO with our name before STARTTLS (NewClientStartTLS
// always says "EHLO localhost" first and startTLS is unexported), cannot be
// built on a connection already upgraded to TLS (it waits for a greeting),
// does not give the text of accepted RCPT replies, and surfaces a malformed
// reply as a textproto error we could not classify.
type session struct {
	nc  net.Conn
	br  *bufio.Reader
	bw  *bufio.Writer
	ext map[string]string // EHLO keywords (upper case) and their parameters; nil after HELO
	tls bool

	cmdTimeout  time.Duration // each command's reply, and each write
	dataTimeout time.Duration // the reply to the end of DATA
}

func newSession(nc net.Conn, cmdTimeout, dataTimeout time.Duration) *session {
	s := &session{cmdTimeout: cmdTimeout, dataTimeout: dataTimeout}
	s.setConn(nc)
	return s
}

// setConn starts reading and writing on nc with fresh buffers, so nothing
// read before a TLS handshake is ever taken as said after it.
func (s *session) setConn(nc net.Conn) {
	s.nc = nc
	s.br = bufio.NewReaderSize(nc, maxReplyLine)
	s.bw = bufio.NewWriter(nc)
}

func (s *session) readReply(timeout time.Duration) (reply, error) {
	if err := s.nc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return reply{}, err
	}
	return readReply(s.br)
}

// cmd sends one command line and reads its reply.
func (s *session) cmd(line string) (reply, error) {
	if err := s.nc.SetWriteDeadline(time.Now().Add(s.cmdTimeout)); err != nil {
		return reply{}, err
	}
	if _, err := s.bw.WriteString(line + "\r\n"); err != nil {
		return reply{}, err
	}
	if err := s.bw.Flush(); err != nil {
		return reply{}, err
	}
	return s.readReply(s.cmdTimeout)
}

// hello says EHLO, and HELO when the server does not know EHLO (RFC 5321
// 3.2). It records the extensions of a 250 EHLO reply.
func (s *session) hello(name string) (reply, error) {
	s.ext = nil
	r, err := s.cmd("EHLO " + name)
	if err != nil {
		return r, err
	}
	if r.code == 500 || r.code == 502 {
		return s.cmd("HELO " + name)
	}
	if r.class() == 2 {
		s.ext = make(map[string]string)
		for _, l := range r.lines[1:] {
			kw, params, _ := strings.Cut(l, " ")
			s.ext[strings.ToUpper(kw)] = params
		}
	}
	return r, nil
}

func (s *session) has(ext string) bool {
	_, ok := s.ext[ext]
	return ok
}

// errTLSHandshake marks a failed handshake after the server said 220 to
// STARTTLS: the connection is unusable, a new one goes without TLS.
var errTLSHandshake = errors.New("TLS handshake failed")

// startTLS asks for TLS and does the handshake. A refusal (any reply but
// 220) is returned as a reply with a nil error: the session goes on in the
// clear, as before the command.
func (s *session) startTLS(ctx context.Context, cfg *tls.Config) (reply, error) {
	r, err := s.cmd("STARTTLS")
	if err != nil || r.code != 220 {
		return r, err
	}
	// Bytes already buffered were sent before the handshake, so anyone on
	// the path could have written them (the STARTTLS injection class,
	// CVE-2011-0411): setConn drops them with the old buffer.
	tc := tls.Client(s.nc, cfg)
	if err := tc.SetDeadline(time.Now().Add(s.cmdTimeout)); err != nil {
		return r, err
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return r, fmt.Errorf("%w: %w", errTLSHandshake, err)
	}
	if err := tc.SetDeadline(time.Time{}); err != nil {
		return r, err
	}
	s.setConn(tc)
	s.tls = true
	s.ext = nil
	return r, nil
}

// data sends the DATA command and, when the server is ready (354), the body
// dot-stuffed and terminated, then reads the final reply. The reply returned
// is the one that decides: a 4xx or 5xx to DATA itself, or the final one.
func (s *session) data(body []byte) (reply, error) {
	r, err := s.cmd("DATA")
	switch {
	case err != nil:
		return r, err
	case r.class() == 4 || r.class() == 5:
		return r, nil
	case r.code != 354:
		// A 250 here would claim a delivery of nothing.
		return reply{}, fmt.Errorf("%w: DATA answered %s instead of 354", errProtocol, r)
	}
	// Every write gets the command timeout, RFC 5321 4.5.3.2.5's "data
	// block" limit (3 minutes there); a slow but moving peer is fine.
	dw := textproto.NewWriter(s.bw).DotWriter()
	for len(body) > 0 {
		n := min(len(body), 64<<10)
		if err := s.nc.SetWriteDeadline(time.Now().Add(s.cmdTimeout)); err != nil {
			return reply{}, err
		}
		if _, err := dw.Write(body[:n]); err != nil {
			return reply{}, err
		}
		body = body[n:]
	}
	if err := s.nc.SetWriteDeadline(time.Now().Add(s.cmdTimeout)); err != nil {
		return reply{}, err
	}
	// Close adds a final CRLF if the body lacks one, then ".", and flushes.
	if err := dw.Close(); err != nil {
		return reply{}, err
	}
	return s.readReply(s.dataTimeout)
}

// quit says goodbye without caring for the answer: everything that
// mattered has been decided. The short deadline keeps a silent server from
// holding the delivery.
func (s *session) quit() {
	t := min(s.cmdTimeout, 10*time.Second)
	if s.nc.SetDeadline(time.Now().Add(t)) == nil {
		if _, err := s.bw.WriteString("QUIT\r\n"); err == nil && s.bw.Flush() == nil {
			_, _ = readReply(s.br)
		}
	}
}

func (s *session) close() error {
	return s.nc.Close()
}
