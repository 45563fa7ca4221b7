package smtpd

import (
	"bytes"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"clustermail/routing"
)

// Authenticator checks credentials and who may use which sender address.
type Authenticator interface {
	// Authenticate returns the account of a correct username and password.
	Authenticate(username, password string) (account string, ok bool)
	// MaySend reports whether account may use from as its envelope sender:
	// its own address or one of its aliases.
	MaySend(account, from string) bool
}

var (
	errAuthRequired = smtpErr(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required")
	errAuthFailed   = smtpErr(535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid")
)

// submissionSession is a session on the submission ports: AUTH first, then
// any recipient, with the sender bound to the account.
type submissionSession struct {
	*session
}

var _ smtp.AuthSession = (*submissionSession)(nil)

func (s *submissionSession) AuthMechanisms() []string { return []string{sasl.Plain, "LOGIN"} }

func (s *submissionSession) Auth(mech string) (sasl.Server, error) {
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && !strings.EqualFold(identity, user) {
				return smtpErr(535, smtp.EnhancedCode{5, 7, 8}, "Acting as another user is not allowed")
			}
			return s.login(user, pass)
		}), nil
	case "LOGIN":
		return newLoginServer(s.login), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// login checks a password, slowed down by earlier failures of this client
// or this account, and counted.
func (s *submissionSession) login(user, pass string) error {
	ip, _, _ := net.SplitHostPort(s.remote)
	keyIP, keyUser := "ip:"+ip, "user:"+strings.ToLower(user)
	if s.s.authLimit.Locked(keyIP, keyUser) {
		s.s.log.Warn("authentication refused: locked out", "remote", s.remote, "user", user)
		return errAuthLocked
	}
	if d := s.s.authLimit.Delay(keyIP, keyUser); d > 0 {
		time.Sleep(d)
	}
	account, ok := s.s.auth.Authenticate(user, pass)
	if !ok {
		s.s.authLimit.Fail(keyIP, keyUser)
		s.s.m.authFailures.WithLabelValues(s.s.cfg.Name).Inc()
		s.s.log.Warn("authentication failed", "remote", s.remote, "user", user)
		return errAuthFailed
	}
	// Only the account's count is forgiven: one valid login must not
	// reset a client that guesses at other accounts.
	s.s.authLimit.Succeed(keyUser)
	s.account = account
	s.s.log.Info("authenticated", "remote", s.remote, "account", account)
	return nil
}

func (s *submissionSession) Mail(from string, opts *smtp.MailOptions) error {
	if s.account == "" {
		return errAuthRequired
	}
	if from == "" || !s.s.auth.MaySend(s.account, from) {
		return smtpErr(553, smtp.EnhancedCode{5, 7, 1}, "Sender address not owned by %s", s.account)
	}
	return s.session.Mail(from, opts)
}

func (s *submissionSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.account == "" {
		return errAuthRequired
	}
	return s.session.Rcpt(to, opts)
}

// resolveAuthenticated resolves a recipient for an authenticated sender:
// hosted addresses as usual, any other address goes out.
func (s *session) resolve(to string) ([]routing.Target, error) {
	if s.s.cfg.Mode == ModeSubmission {
		return s.s.router.ResolveAny(to)
	}
	return s.s.router.Resolve(to)
}

// completeHeaders adds Message-ID and Date to a submitted message that
// lacks them (RFC 6409 8.2, 8.3), after the trace header already written.
func completeHeaders(msg []byte, hostname, id string, now time.Time) []byte {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	hdr := msg[:end]
	var add bytes.Buffer
	if !hasHeader(hdr, "Message-Id") {
		fmt.Fprintf(&add, "Message-ID: <%s@%s>\r\n", id, hostname)
	}
	if !hasHeader(hdr, "Date") {
		fmt.Fprintf(&add, "Date: %s\r\n", now.Format(time.RFC1123Z))
	}
	if add.Len() == 0 {
		return msg
	}
	// After the Received: header the server wrote first.
	at := 0
	if bytes.HasPrefix(msg, []byte("Received:")) {
		at = receivedEnd(msg)
	}
	out := make([]byte, 0, len(msg)+add.Len())
	out = append(out, msg[:at]...)
	out = append(out, add.Bytes()...)
	return append(out, msg[at:]...)
}

func hasHeader(hdr []byte, name string) bool {
	for _, line := range bytes.Split(hdr, []byte("\r\n")) {
		if i := bytes.IndexByte(line, ':'); i > 0 && len(line) > 0 && line[0] != ' ' && line[0] != '\t' {
			if textproto.CanonicalMIMEHeaderKey(string(bytes.TrimSpace(line[:i]))) == textproto.CanonicalMIMEHeaderKey(name) {
				return true
			}
		}
	}
	return false
}

// receivedEnd is the offset just past the first (folded) header field.
func receivedEnd(msg []byte) int {
	i := 0
	for {
		j := bytes.Index(msg[i:], []byte("\r\n"))
		if j < 0 {
			return len(msg)
		}
		i += j + 2
		if i >= len(msg) || (msg[i] != ' ' && msg[i] != '\t') {
			return i
		}
	}
}
