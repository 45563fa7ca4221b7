// Package smtpd is the inbound SMTP listener: a go-smtp backend that accepts
// mail for the hosted domains on any node and hands it to routing.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/emersion/go-smtp"

	"clustermail/routing"
	"clustermail/throttle"
)

// Mode is what a listener is for.
type Mode int

const (
	// ModeInbound receives mail for the hosted domains from anyone (port 25).
	ModeInbound Mode = iota
	// ModeSubmission takes mail from authenticated account holders to any
	// address (ports 587 and 465).
	ModeSubmission
)

// Config holds the listener's limits. Every limit is set: go-smtp's
// defaults are unlimited.
type Config struct {
	Name            string // the listener's label in metrics and logs: smtp, submission, submissions
	Mode            Mode
	TLS             *tls.Config // offers STARTTLS when set (and ImplicitTLS is false)
	ImplicitTLS     bool        // TLS from the first byte (port 465)
	InsecureAuth    bool        // allow AUTH without TLS: loopback tests only
	Addr            string
	Hostname        string
	MaxMessageBytes int64
	MaxRecipients   int
	MaxLineLength   int           // octets per line, CRLF included (RFC 5321: 1000)
	Timeout         time.Duration // idle time allowed for one command or data line
	MaxConnections  int
	Signer          Signer   // DKIM-signs authenticated submissions; nil: no signing
	MailAuth        MailAuth // SPF, DKIM, DMARC for inbound mail from strangers (mailauth.go); nil: no checks

	// Limits against abuse (limits.go); zero values mean none.
	MaxConnectionsPerIP int               // concurrent connections per client address
	SendRate            *throttle.Rate    // messages per authenticated account and hour, shared by the submission listeners
	Logins              *throttle.Limiter // failed logins, shared with IMAP and POP3; nil makes a private one
}

// Router is what the listener needs from routing.
type Router interface {
	Resolve(rcpt string) ([]routing.Target, error)
	ResolveAny(rcpt string) ([]routing.Target, error)
	// Room reports whether the node has disk space for a message of about
	// size bytes (0: unknown).
	Room(size int64) error
	Accept(ctx context.Context, id, from string, targets []routing.Target, body []byte) error
}

// Server is one node's inbound SMTP service.
type Server struct {
	cfg       Config
	router    Router
	auth      Authenticator
	authLimit *throttle.Limiter
	log       *slog.Logger
	srv       *smtp.Server
	ln        net.Listener
	m         *Metrics
}

// New prepares a listener; Serve starts it. auth may be nil for ModeInbound.
func New(cfg Config, router Router, auth Authenticator, log *slog.Logger, m *Metrics) (*Server, error) {
	if cfg.Mode == ModeSubmission && auth == nil {
		return nil, fmt.Errorf("smtp %s: submission needs an authenticator", cfg.Name)
	}
	if cfg.ImplicitTLS && cfg.TLS == nil {
		return nil, fmt.Errorf("smtp %s: implicit TLS needs a certificate (--tls-cert, --tls-key)", cfg.Name)
	}
	if cfg.Logins == nil {
		cfg.Logins = throttle.New()
	}
	s := &Server{cfg: cfg, router: router, auth: auth, authLimit: cfg.Logins, log: log.With("listener", cfg.Name), m: m}
	// Expose every series of this listener from the start, at zero.
	m.sessions.WithLabelValues(cfg.Name)
	m.active.WithLabelValues(cfg.Name)
	m.refused.WithLabelValues(cfg.Name)
	m.authFailures.WithLabelValues(cfg.Name)
	srv := smtp.NewServer(backend{s})
	srv.Addr = cfg.Addr
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	srv.MaxLineLength = cfg.MaxLineLength
	srv.ReadTimeout = cfg.Timeout
	srv.WriteTimeout = cfg.Timeout
	srv.EnableSMTPUTF8 = true
	srv.TLSConfig = cfg.TLS
	srv.AllowInsecureAuth = cfg.InsecureAuth
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	s.srv = srv
	return s, nil
}

// Listen binds the address; separate from Serve so start-up fails early.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("smtp listen %s: %w", s.cfg.Addr, err)
	}
	l := &limitListener{Listener: ln, sem: make(chan struct{}, max(s.cfg.MaxConnections, 1)), m: s.m, name: s.cfg.Name,
		hostname: s.cfg.Hostname, idle: s.cfg.Timeout,
		perIP: throttle.NewConns(s.cfg.MaxConnectionsPerIP), maxCommands: maxCommands}
	s.ln = l
	if s.cfg.ImplicitTLS {
		s.ln = tls.NewListener(s.ln, s.cfg.TLS)
	}
	l.refuser = throttle.NewRefuser(64, s.cfg.ImplicitTLS, s.cfg.TLS)
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve accepts sessions until Shutdown.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits for sessions to end until ctx does,
// then closes the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	// go-smtp closes only the listeners its Serve has registered: when
	// Serve has not started yet (a node failing right after startSMTP),
	// ours would stay open and Serve would accept forever.
	if s.ln != nil {
		s.ln.Close()
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return s.srv.Close()
	}
	return err
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.s.m.sessions.WithLabelValues(b.s.cfg.Name).Inc()
	nc := c.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	cc, _ := nc.(*countingConn)
	sess := &session{s: b.s, conn: c, cc: cc, remote: c.Conn().RemoteAddr().String()}
	if b.s.cfg.Mode == ModeSubmission {
		return &submissionSession{session: sess}, nil
	}
	return sess, nil
}
