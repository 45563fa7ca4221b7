// Package imapd is the IMAP front end: IMAP4rev1 (RFC 3501) and IMAP4rev2
// (RFC 9051) on every node, for every account. The Backend finds the store
// holding an account's mailboxes, local or on its owner node, so a session
// looks the same wherever the client connects.
//
// The protocol engine is github.com/emersion/go-imap/v2's imapserver. It
// lacks QUOTA (RFC 9208) and CONDSTORE (RFC 7162) and has no hook for extra
// commands, so go.mod replaces it with a patched copy under
// third_party/go-imap (patches listed in its PATCHES.md). A patched copy
// was chosen over a layer in front of the library because CONDSTORE is not
// a set of extra commands: it adds modifiers and data items inside SELECT,
// STATUS, FETCH, STORE and SEARCH, which a front layer could only handle by
// parsing and rewriting every command line itself, that is by duplicating
// the library's parser with all its literal handling. The patch is a few
// hundred lines in the library's own style, on the parsing and response
// side only; the semantics (MODSEQ, UNCHANGEDSINCE, quota usage) live here
// and in mailstore. The same copy fixes how the library treats bad input
// (rejected literals, overlong or garbled command lines, idle timeout).
//
// Decisions worth knowing:
//
//   - Every session keeps its own view of the selected mailbox: the UIDs
//     the client knows, in sequence order, with the MODSEQ last reported
//     for each. go-imap's MailboxTracker is not used: it assumes every
//     change is made in this process and announced by whoever made it,
//     while here changes come from other nodes (deliveries by the owner's
//     queue worker, sessions on other nodes writing through a remote
//     store). The store is the only complete source of changes, so on
//     Store.Subscribe's signal a session compares the mailbox's
//     HIGHESTMODSEQ with its view and, if it moved, re-reads the message
//     list and reports the difference: EXPUNGE (only where RFC 9051 allows
//     it), FETCH FLAGS (with MODSEQ once CONDSTORE is enabled) and EXISTS.
//     Sequence numbers therefore change only when the client is told.
//   - \Recent is not kept (RFC 9051 dropped it): RECENT is always 0.
//   - Quota is per account, one root named "" covering every mailbox, with
//     the STORAGE resource only; an account without a limit has no quota
//     root. APPEND and COPY that would exceed it answer NO [OVERQUOTA].
//     The check and the write are two store calls, so concurrent APPENDs
//     may overshoot by one message each.
//   - A store error wrapping ErrUnavailable (the owner node is down) makes
//     the command answer NO [UNAVAILABLE]; the session keeps its view, so
//     the client never sees a wrong or empty mailbox, and carries on when
//     the owner is back.
//   - A mailbox deleted or recreated (new UIDVALIDITY) under a session by
//     another one ends that session with BYE; a rename is followed. A
//     session that deletes its own selected mailbox gets NO [NONEXISTENT]
//     for commands on it until it selects another.
//   - .SILENT STORE suppresses the FETCH even if another session changed
//     the message's other flags just before (RFC 3501 only says SHOULD);
//     EXPUNGE in a read-only (EXAMINE) mailbox does nothing, which is what
//     CLOSE needs there.
//   - A non-synchronizing literal over the limit, or a command line over
//     50 KiB, is answered with BAD/NO [TOOBIG] and the connection closed:
//     the data already on its way is not read, and must not be taken for
//     commands.
package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/prometheus/client_golang/prometheus"

	"clustermail/mailrpc"
	"clustermail/mailstore"
	"clustermail/throttle"
)

// Store is the mailbox access the server needs. *mailstore.Store satisfies
// it, and so does *mailrpc.Client for an account owned by another node. Errors wrap the
// mailstore sentinels (ErrNoMailbox, ErrMailboxExists, ...) or, when the
// owner node cannot be reached, ErrUnavailable.
//
// Subscribe's channel must receive a value after every change of the
// account (spurious values are harmless); a remote implementation that
// loses its stream sends one after reconnecting, so sessions re-read.
type Store interface {
	EnsureAccount(account string) error
	Mailboxes(account string) ([]mailstore.MailboxInfo, error)
	Mailbox(account, name string) (mailstore.MailboxInfo, error)
	CreateMailbox(account, name string, specialUse string) error
	RenameMailbox(account, from, to string) error
	DeleteMailbox(account, name string) error
	SetSubscribed(account, name string, on bool) error
	Append(account, mailbox string, flags []string, internalDate time.Time, body []byte) (uidValidity, uid uint32, err error)
	Messages(account, mailbox string) ([]mailstore.Message, error)
	Message(account, mailbox string, uid uint32) (mailstore.Message, error)
	Body(account, mailbox string, uid uint32) ([]byte, error)
	StoreFlags(account, mailbox string, uids []uint32, op mailstore.FlagOp, flags []string, unchangedSince uint64) (updated []mailstore.Message, failed []uint32, err error)
	Copy(account, from string, uids []uint32, to string) (uidValidity uint32, srcUIDs, dstUIDs []uint32, err error)
	Move(account, from string, uids []uint32, to string) (uidValidity uint32, srcUIDs, dstUIDs []uint32, err error)
	Expunge(account, mailbox string, uids []uint32) ([]uint32, error)
	Usage(account string) (messages int, bytes int64, err error)
	Subscribe(account string) (<-chan struct{}, func())
}

// Backend authenticates users, finds the store of an account (which may be
// on another node) and its quota.
type Backend interface {
	// Authenticate returns the account of a correct user name and password.
	Authenticate(user, pass string) (account string, ok bool)
	// Open returns the store holding the account's mailboxes. An error
	// wrapping ErrUnavailable means the owner node is down.
	Open(account string) (Store, error)
	// Quota returns the account's storage limit in bytes; 0 is unlimited.
	Quota(account string) (limit int64, err error)
}

// ErrUnavailable is what a Backend or Store wraps when the node owning a
// mailbox cannot be reached; clients get NO [UNAVAILABLE] and retry later.
// It is mailrpc's sentinel, so that a *mailrpc.Client serves as the Store
// of a remote account as it is, mid-session failures included.
var ErrUnavailable = mailrpc.ErrUnavailable

// Config holds a listener's settings. Zero limits take the defaults.
type Config struct {
	Name         string      // listener label in logs and metrics: "imap" or "imaps"
	Addr         string      // listen address
	TLS          *tls.Config // STARTTLS is offered when set and ImplicitTLS is false
	ImplicitTLS  bool        // TLS from the first byte (port 993)
	InsecureAuth bool        // LOGIN/AUTHENTICATE without TLS: loopback tests only
	MaxLiteral   int64       // largest APPEND accepted, in bytes (advertised as APPENDLIMIT); other literals are limited to 4 KiB
	// Timeout is how long an authenticated client may stay silent between
	// commands; IDLE lasts at least 35 minutes, and before login go-imap
	// allows 30 seconds per command.
	Timeout        time.Duration
	MaxConnections int // concurrent connections; more are answered BYE [UNAVAILABLE]

	// MaxConnectionsPerIP bounds the concurrent connections of one client
	// address; 0 allows any number.
	MaxConnectionsPerIP int
}

// Defaults for zero Config fields.
const (
	// DefaultMaxLiteral is the APPEND limit, advertised as APPENDLIMIT.
	DefaultMaxLiteral = 64 << 20
	// DefaultTimeout is how long an authenticated client may stay silent
	// outside IDLE; RFC 9051 section 5.4 asks for at least 30 minutes.
	DefaultTimeout = 30 * time.Minute
	// DefaultMaxConnections bounds concurrent connections per listener.
	DefaultMaxConnections = 1000
)

// Server is one IMAP listener.
type Server struct {
	cfg     Config
	backend Backend
	limiter *throttle.Limiter
	log     *slog.Logger
	m       *Metrics
	srv     *imapserver.Server

	mu       sync.Mutex
	ln       net.Listener
	sessions map[*session]struct{}
	closing  atomic.Bool
	quit     chan struct{} // closed by Shutdown
	allGone  chan struct{} // signalled when the last session ends during shutdown

	// wait pauses a login for the throttle's delay; false means the server
	// is shutting down. Tests replace it so they need not wait.
	wait func(time.Duration) bool
}

// New prepares a listener; Listen binds it and Serve runs it. limiter is
// shared with the other protocols (nil makes a private one); m is shared by
// the node's IMAP listeners.
func New(cfg Config, b Backend, limiter *throttle.Limiter, log *slog.Logger, m *Metrics) (*Server, error) {
	if cfg.Name == "" {
		cfg.Name = "imap"
	}
	if b == nil {
		return nil, fmt.Errorf("imap %s: no backend", cfg.Name)
	}
	if m == nil {
		return nil, fmt.Errorf("imap %s: no metrics", cfg.Name)
	}
	if cfg.ImplicitTLS && cfg.TLS == nil {
		return nil, fmt.Errorf("imap %s: implicit TLS needs a certificate", cfg.Name)
	}
	if cfg.TLS == nil && !cfg.InsecureAuth {
		// Nobody could ever log in: better to fail at start-up.
		return nil, fmt.Errorf("imap %s: no TLS certificate and insecure auth off: no login would be possible", cfg.Name)
	}
	if cfg.MaxLiteral <= 0 {
		cfg.MaxLiteral = DefaultMaxLiteral
	}
	// APPENDLIMIT is a 32-bit number in go-imap.
	cfg.MaxLiteral = min(cfg.MaxLiteral, int64(^uint32(0)))
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if limiter == nil {
		limiter = throttle.New()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:      cfg,
		backend:  b,
		limiter:  limiter,
		log:      log.With("listener", cfg.Name),
		m:        m,
		sessions: map[*session]struct{}{},
		quit:     make(chan struct{}),
		allGone:  make(chan struct{}, 1),
	}
	s.wait = s.pause
	m.init(cfg.Name)
	opts := &imapserver.Options{
		NewSession:   s.newSession,
		Caps:         capabilities(),
		Logger:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		InsecureAuth: cfg.InsecureAuth,
		IdleTimeout:  cfg.Timeout,
	}
	if !cfg.ImplicitTLS {
		opts.TLSConfig = cfg.TLS
	}
	s.srv = imapserver.New(opts)
	return s, nil
}

// capabilities are the extensions advertised, each one implemented by the
// session or by the patched library. go-imap adds the ones that need no
// backend support (IDLE, UNSELECT, ENABLE, UTF8=ACCEPT, SASL-IR, LITERAL-,
// STARTTLS, AUTH=PLAIN) and APPENDLIMIT from Session.AppendLimit.
func capabilities() imap.CapSet {
	caps := imap.CapSet{}
	for _, c := range []imap.Cap{
		imap.CapIMAP4rev1, imap.CapIMAP4rev2,
		imap.CapNamespace, imap.CapUIDPlus, imap.CapMove,
		imap.CapESearch, imap.CapSearchRes,
		imap.CapListExtended, imap.CapListStatus, imap.CapChildren,
		imap.CapSpecialUse, imap.CapCreateSpecialUse,
		imap.CapStatusSize, imap.CapBinary, imap.CapLiteralPlus,
		imap.CapCondStore,
		imap.CapQuota, "QUOTA=RES-STORAGE",
	} {
		caps[c] = struct{}{}
	}
	return caps
}

// Listen binds the address; separate from Serve so start-up fails early.
func (s *Server) Listen() error {
	raw, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("imap %s listen %s: %w", s.cfg.Name, s.cfg.Addr, err)
	}
	var ln net.Listener = &limitListener{Listener: raw, s: s, sem: make(chan struct{}, s.cfg.MaxConnections),
		refuser: throttle.NewRefuser(64, s.cfg.ImplicitTLS, s.cfg.TLS),
		perIP:   throttle.NewConns(s.cfg.MaxConnectionsPerIP)}
	if s.cfg.ImplicitTLS {
		// Over the limit wrapper, so that the library sees *tls.Conn and
		// knows the session is encrypted.
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		raw.Close()
		return fmt.Errorf("imap %s listen: %w", s.cfg.Name, net.ErrClosed)
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
	err := s.srv.Serve(ln)
	if s.closing.Load() || errors.Is(err, net.ErrClosed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("imap %s: %w", s.cfg.Name, err)
	}
	return nil
}

// Shutdown stops accepting and ends every session with BYE (IMAP sessions
// last for hours, so waiting for clients to leave is pointless). A command
// in progress finishes its store call; its answer may be lost, which IMAP
// clients handle by re-syncing. Shutdown waits for the sessions to end
// until ctx is done, then closes what is left and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing.Swap(true) {
		close(s.quit)
		if s.ln != nil {
			s.ln.Close()
		}
	}
	for sess := range s.sessions {
		// Bye waits for a response being written; do not hold mu for it.
		go sess.conn.Bye("Server shutting down")
	}
	n := len(s.sessions)
	s.mu.Unlock()

	var err error
	if n > 0 {
		select {
		case <-s.allGone:
		case <-ctx.Done():
			err = fmt.Errorf("imap %s shutdown: %w", s.cfg.Name, ctx.Err())
		}
	}
	// Closes whatever is left (sessions accepted meanwhile, stuck ones).
	_ = s.srv.Close()
	return err
}

// pause waits d, or until Shutdown; it reports whether d elapsed.
func (s *Server) pause(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.quit:
		return false
	}
}

// track registers or forgets a session, for Shutdown.
func (s *Server) track(sess *session, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.sessions[sess] = struct{}{}
		return
	}
	delete(s.sessions, sess)
	if len(s.sessions) == 0 && s.closing.Load() {
		select {
		case s.allGone <- struct{}{}:
		default:
		}
	}
}

// Metrics are shared by a node's IMAP listeners, labelled by listener.
type Metrics struct {
	sessions     *prometheus.CounterVec
	active       *prometheus.GaugeVec
	refused      *prometheus.CounterVec
	authFailures *prometheus.CounterVec
}

// NewMetrics registers the IMAP metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	l := []string{"listener"}
	m := &Metrics{
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clustermail_imap_sessions_total", Help: "IMAP sessions started."}, l),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "clustermail_imap_connections", Help: "Open IMAP connections."}, l),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clustermail_imap_connections_refused_total",
			Help: "IMAP connections refused because the connection limit was reached."}, l),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clustermail_imap_auth_failures_total", Help: "Failed IMAP logins (LOGIN and AUTHENTICATE)."}, l),
	}
	reg.MustRegister(m.sessions, m.active, m.refused, m.authFailures)
	return m
}

// init makes a listener's series exist, at zero, from the start.
func (m *Metrics) init(listener string) {
	m.sessions.WithLabelValues(listener)
	m.active.WithLabelValues(listener)
	m.refused.WithLabelValues(listener)
	m.authFailures.WithLabelValues(listener)
}

// limitListener caps concurrent connections (go-imap has no limit) and
// counts them.
type limitListener struct {
	net.Listener
	s       *Server
	sem     chan struct{} // one token per open connection
	refuser *throttle.Refuser
	perIP   *throttle.Conns
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			ip := c.RemoteAddr().String()
			if host, _, err := net.SplitHostPort(ip); err == nil {
				ip = host
			}
			if !l.perIP.Acquire(ip) {
				<-l.sem
				l.refuse(c, "* BYE [UNAVAILABLE] Too many connections from your address\r\n")
				continue
			}
			l.s.m.active.WithLabelValues(l.s.cfg.Name).Inc()
			return &countedConn{Conn: c, l: l, ip: ip}, nil
		default:
			l.refuse(c, "* BYE [UNAVAILABLE] Too many connections, try again later\r\n")
		}
	}
}

// refuse answers a connection over the limit with BYE and closes it.
func (l *limitListener) refuse(c net.Conn, bye string) {
	l.s.m.refused.WithLabelValues(l.s.cfg.Name).Inc()
	l.refuser.Refuse(c, bye)
}

// countedConn gives its connection token back when closed.
type countedConn struct {
	net.Conn
	l    *limitListener
	ip   string
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.s.m.active.WithLabelValues(c.l.s.cfg.Name).Dec()
		c.l.perIP.Release(c.ip)
		<-c.l.sem
	})
	return err
}
