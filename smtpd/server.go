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
	"github.com/prometheus/client_golang/prometheus"

	"clustermail/routing"
)

// Config holds the listener's limits. Every limit is set: go-smtp's
// defaults are unlimited.
type Config struct {
	Addr            string
	Hostname        string
	MaxMessageBytes int64
	MaxRecipients   int
	MaxLineLength   int           // octets per line, CRLF included (RFC 5321: 1000)
	Timeout         time.Duration // idle time allowed for one command or data line
	MaxConnections  int
}

// Router is what the listener needs from routing.
type Router interface {
	Resolve(rcpt string) ([]routing.Target, error)
	Accept(ctx context.Context, id, from string, targets []routing.Target, body []byte) error
}

// Server is one node's inbound SMTP service.
type Server struct {
	cfg    Config
	router Router
	log    *slog.Logger
	srv    *smtp.Server
	ln     net.Listener
	m      metrics
}

// New prepares the listener; Serve starts it.
func New(cfg Config, router Router, log *slog.Logger, reg prometheus.Registerer) *Server {
	s := &Server{cfg: cfg, router: router, log: log, m: newMetrics(reg)}
	srv := smtp.NewServer(backend{s})
	srv.Addr = cfg.Addr
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	srv.MaxLineLength = cfg.MaxLineLength
	srv.ReadTimeout = cfg.Timeout
	srv.WriteTimeout = cfg.Timeout
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	s.srv = srv
	return s
}

// Listen binds the address; separate from Serve so start-up fails early.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("smtp listen %s: %w", s.cfg.Addr, err)
	}
	s.ln = &limitListener{Listener: ln, sem: make(chan struct{}, max(s.cfg.MaxConnections, 1)), m: &s.m, hostname: s.cfg.Hostname,
		idle: s.cfg.Timeout}
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
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return s.srv.Close()
	}
	return err
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.s.m.sessions.Inc()
	nc := c.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	cc, _ := nc.(*countingConn)
	return &session{s: b.s, conn: c, cc: cc, remote: c.Conn().RemoteAddr().String()}, nil
}
