// Package pop3d is the POP3 front end (RFC 1939, with CAPA and response
// codes of RFC 2449, STLS of RFC 2595 and AUTH PLAIN of RFC 5034). Every
// node serves every account: the Backend finds the store that holds the
// account's mailbox, local or on its owner node.
//
// Decisions worth knowing:
//
//   - Only the INBOX is served. Messages an IMAP client has flagged
//     \Deleted (but not expunged) are left out: POP3 knows no flags, and a
//     message its owner has deleted should not reappear in another client.
//   - The maildrop is a snapshot taken at login: message numbers and sizes
//     stay fixed for the session. Sizes are the stored octet counts, which
//     are what RETR sends (stored messages already use CRLF).
//   - There is no exclusive maildrop lock (as in Dovecot's default): IMAP
//     and other POP3 sessions may run at the same time. Deletion goes by
//     UID, so a message already removed elsewhere is simply gone: RETR says
//     so, and QUIT does not count it as a failure.
//   - DELE only marks; QUIT in the TRANSACTION state flags the marked
//     messages \Deleted and expunges exactly those. A dropped connection,
//     idle timeout or shutdown deletes nothing (RFC 1939 section 6).
//     Messages retrieved with RETR are flagged \Seen at QUIT, best effort,
//     so IMAP shows them as read.
//   - An authenticated account without an INBOX has never received mail:
//     it gets an empty maildrop. Any other backend error is a temporary
//     "-ERR" with the SYS/TEMP response code, never a wrong or empty mailbox.
//   - UIDL is "<uidvalidity>.<uid>", stable across sessions and unique
//     even if the INBOX were ever recreated.
//   - Passwords travel only inside TLS unless Config.InsecureAuth is set.
package pop3d

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clustermail/mailstore"
	"clustermail/throttle"
)

// Store is the mailbox access the server needs. *mailstore.Store
// satisfies it, and so does a client of a remote node's store; errors
// should wrap the mailstore sentinels (ErrNoMailbox, ErrNoMessage) or
// ErrUnavailable.
type Store interface {
	Messages(account, mailbox string) ([]mailstore.Message, error)
	Body(account, mailbox string, uid uint32) ([]byte, error)
	Mailbox(account, name string) (mailstore.MailboxInfo, error)
	StoreFlags(account, mailbox string, uids []uint32, op mailstore.FlagOp, flags []string, unchangedSince uint64) ([]mailstore.Message, []uint32, error)
	Expunge(account, mailbox string, uids []uint32) ([]uint32, error)
}

// The local store is one; a remote node's client is the other.
var _ Store = (*mailstore.Store)(nil)

// Backend authenticates users and finds the store of an account, which
// may be on another node.
type Backend interface {
	// Authenticate returns the account of a correct user name and password.
	Authenticate(user, pass string) (account string, ok bool)
	// Open returns the store holding the account's mailbox. An error
	// wrapping ErrUnavailable means the owner node is down.
	Open(account string) (Store, error)
}

// ErrUnavailable is what a Backend or Store wraps when the node owning a
// mailbox cannot be reached; clients are told to try again later.
var ErrUnavailable = errors.New("mailbox temporarily unavailable")

// Config holds a listener's settings. Zero limits take the defaults.
type Config struct {
	Name           string      // listener label in logs and metrics: "pop3" or "pop3s"
	Addr           string      // listen address
	Hostname       string      // announced in the greeting
	TLS            *tls.Config // STLS is offered when set and ImplicitTLS is false
	ImplicitTLS    bool        // TLS from the first byte (port 995)
	InsecureAuth   bool        // allow passwords before TLS: loopback tests only
	Timeout        time.Duration
	MaxConnections int
	MaxLineLength  int // octets per command line, CRLF included

	// MaxConnectionsPerIP bounds the concurrent sessions of one client
	// address; 0 allows any number.
	MaxConnectionsPerIP int
}

// Defaults for zero Config fields.
const (
	// DefaultTimeout is RFC 1939's minimum autologout timer.
	DefaultTimeout = 10 * time.Minute
	// DefaultMaxConnections bounds concurrent sessions per listener.
	DefaultMaxConnections = 1000
	// DefaultMaxLineLength is generous: RFC 2449 caps commands at 255.
	DefaultMaxLineLength = 512
	// authLineLength is the minimum line length for AUTH and its SASL
	// responses, which carry base64 and may exceed the command limit.
	authLineLength = 1024
)

// Server is one POP3 listener.
type Server struct {
	cfg     Config
	backend Backend
	limiter *throttle.Limiter
	log     *slog.Logger
	m       *metrics

	sem     chan struct{} // one token per open session
	refuser *throttle.Refuser
	perIP   *throttle.Conns

	mu       sync.Mutex
	ln       net.Listener
	sessions map[*session]struct{}
	wg       sync.WaitGroup
	closing  atomic.Bool
	quit     chan struct{} // closed by Shutdown

	// wait pauses a login for the throttle's delay; false means the server
	// is shutting down. Tests replace it so they need not wait.
	wait func(time.Duration) bool
}

// New prepares a listener; Listen binds it and Serve runs it. limiter may
// be shared with the other protocols (nil makes a private one). The
// metrics are registered on reg, and reused when another listener has
// registered them already, so pop3 and pop3s can share one registry.
func New(cfg Config, b Backend, limiter *throttle.Limiter, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if cfg.Name == "" {
		cfg.Name = "pop3"
	}
	if b == nil {
		return nil, fmt.Errorf("pop3 %s: no backend", cfg.Name)
	}
	if cfg.ImplicitTLS && cfg.TLS == nil {
		return nil, fmt.Errorf("pop3 %s: implicit TLS needs a certificate", cfg.Name)
	}
	if cfg.TLS == nil && !cfg.InsecureAuth {
		// Nobody could ever log in: better to fail at start-up.
		return nil, fmt.Errorf("pop3 %s: no TLS certificate and insecure auth off: no login would be possible", cfg.Name)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.MaxLineLength <= 0 {
		cfg.MaxLineLength = DefaultMaxLineLength
	}
	if limiter == nil {
		limiter = throttle.New()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg, cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("pop3 %s: %w", cfg.Name, err)
	}
	s := &Server{
		cfg:      cfg,
		backend:  b,
		limiter:  limiter,
		log:      log.With("listener", cfg.Name),
		m:        m,
		sem:      make(chan struct{}, cfg.MaxConnections),
		perIP:    throttle.NewConns(cfg.MaxConnectionsPerIP),
		refuser:  throttle.NewRefuser(64, cfg.ImplicitTLS, cfg.TLS),
		sessions: map[*session]struct{}{},
		quit:     make(chan struct{}),
	}
	s.wait = s.pause
	return s, nil
}

// Listen binds the address; separate from Serve so start-up fails early.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("pop3 %s listen %s: %w", s.cfg.Name, s.cfg.Addr, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		ln.Close()
		return fmt.Errorf("pop3 %s listen: %w", s.cfg.Name, net.ErrClosed)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve accepts sessions until Shutdown, calling Listen first if needed.
// It returns nil after Shutdown.
func (s *Server) Serve() error {
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
		s.mu.Lock()
		ln = s.ln
		s.mu.Unlock()
	}
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: back off as
				// net/http does rather than spin or give up.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed, retrying", "err", err, "in", backoff)
				if !s.pause(backoff) {
					return nil
				}
				continue
			}
			return fmt.Errorf("pop3 %s accept: %w", s.cfg.Name, err)
		}
		backoff = 0
		select {
		case s.sem <- struct{}{}:
			if !s.perIP.Acquire(remoteIP(c)) {
				<-s.sem
				s.refuse(c, "-ERR [SYS/TEMP] Too many connections from your address")
				continue
			}
			s.start(c)
		default:
			s.refuse(c, "-ERR [SYS/TEMP] too many connections")
		}
	}
}

// remoteIP is the client's address without the port, as sessions keep it.
func remoteIP(c net.Conn) string {
	ip, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return ip
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// start runs a session for c, unless the server is shutting down.
func (s *Server) start(c net.Conn) {
	sess := newSession(s, c)
	s.mu.Lock()
	if s.closing.Load() {
		// Registering now would race Shutdown's wait.
		s.mu.Unlock()
		c.Close()
		s.perIP.Release(sess.ip)
		<-s.sem
		return
	}
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.m.sessions.Inc()
	s.m.active.Inc()
	go func() {
		defer func() {
			s.mu.Lock()
			delete(s.sessions, sess)
			s.mu.Unlock()
			s.m.active.Dec()
			s.perIP.Release(sess.ip)
			<-s.sem
			s.wg.Done()
		}()
		defer func() {
			// A bug met by one client must not take the node down with
			// every other session.
			if v := recover(); v != nil {
				s.log.Error("session panicked", "remote", sess.ip, "panic", v, "stack", string(debug.Stack()))
			}
		}()
		sess.run()
	}()
}

// refuse answers a connection over the limit, as RFC 2449 suggests, and
// closes it.
func (s *Server) refuse(c net.Conn, reply string) {
	s.m.refused.Inc()
	s.refuser.Refuse(c, reply+"\r\n")
}

// Shutdown stops accepting, asks idle sessions to end (each is told
// "-ERR" with SYS/TEMP; none enters the UPDATE state, so nothing is deleted),
// lets commands in progress finish, and waits for the sessions until ctx
// is done; then it closes the connections of the rest and returns ctx's
// error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing.Swap(true) {
		close(s.quit)
		if s.ln != nil {
			s.ln.Close()
		}
	}
	// Sessions set their read deadline before checking closing, so this
	// deadline, set after closing, always wins.
	for sess := range s.sessions {
		_ = sess.raw.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for sess := range s.sessions {
			sess.raw.Close()
		}
		s.mu.Unlock()
		// Not waiting for them: one stuck in a backend call must not
		// hold up the node's shutdown.
		return fmt.Errorf("pop3 %s shutdown: %w", s.cfg.Name, ctx.Err())
	}
}

// pause waits d, or until Shutdown; it reports whether d elapsed.
func (s *Server) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.quit:
		return false
	}
}

// metrics are one listener's view of the POP3 metrics, which are shared
// by all listeners of a registry and labelled by listener.
type metrics struct {
	sessions     prometheus.Counter
	active       prometheus.Gauge
	refused      prometheus.Counter
	authFailures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, listener string) (*metrics, error) {
	l := []string{"listener"}
	sessions, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clustermail_pop3_sessions_total", Help: "POP3 sessions started."}, l))
	if err != nil {
		return nil, err
	}
	active, err := register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "clustermail_pop3_connections", Help: "Open POP3 connections."}, l))
	if err != nil {
		return nil, err
	}
	refused, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clustermail_pop3_connections_refused_total",
		Help: "POP3 connections refused because the connection limit was reached."}, l))
	if err != nil {
		return nil, err
	}
	authFailures, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clustermail_pop3_auth_failures_total", Help: "Failed POP3 logins (USER/PASS and AUTH)."}, l))
	if err != nil {
		return nil, err
	}
	// WithLabelValues also makes the series exist (at zero) from the start.
	return &metrics{
		sessions:     sessions.WithLabelValues(listener),
		active:       active.WithLabelValues(listener),
		refused:      refused.WithLabelValues(listener),
		authFailures: authFailures.WithLabelValues(listener),
	}, nil
}

// register registers c on reg, or returns the equal collector registered
// before (by the node's other POP3 listener). A nil reg registers nothing.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if prev, ok := are.ExistingCollector.(C); ok {
				return prev, nil
			}
		}
		return c, fmt.Errorf("registering metrics: %w", err)
	}
	return c, nil
}
