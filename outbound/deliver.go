// Package outbound delivers a message to the mail servers of one remote
// domain over SMTP (RFC 5321 section 5): it finds the domain's MX hosts,
// tries them in preference order with opportunistic STARTTLS, and turns the
// replies into one Result per recipient for the queue to record.
//
// Decisions on replies that end a session before any recipient is known:
//
//   - Connection failures, timeouts and 4xx replies to the greeting, EHLO or
//     MAIL FROM move on to the next address, then the next MX host. When no
//     host takes the message every recipient is Deferred with the last
//     reason.
//   - A 5xx greeting or EHLO refuses the session, not the message: the next
//     host is tried, as Postfix does by default (smtp_skip_5xx_greeting).
//     The 5xx becomes final (Failed) only when it came from the last address
//     there was to try; Postfix would defer then, and its documentation
//     calls that default incorrect. (Postfix bounces at once on a 5xx EHLO;
//     we give the other hosts their chance.)
//   - A 5xx to MAIL FROM comes from a server that accepted the session and
//     judged the message: it is final for every recipient, at once, as in
//     Postfix. So is a needed SMTPUTF8 that the server lacks (RFC 6531 3.2):
//     the MX hosts of one domain run the same software.
//
// Once MAIL FROM is accepted the transaction stays with that server: per
// recipient RCPT replies, one DATA reply for all accepted, and a connection
// lost on the way defers whoever is not yet decided.
package outbound

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/idna"
)

// Config sets up a Client. Only Resolver is required.
type Config struct {
	// Hostname is the name we give in EHLO. Empty means os.Hostname.
	Hostname string
	// Port is the remote SMTP port: 25 when zero. Tests change it.
	Port int
	// Resolver finds MX hosts and their addresses. Required.
	Resolver Resolver
	// TLS is the base of the client configuration for opportunistic
	// STARTTLS. Its RootCAs (nil: the system's) only serve to log whether
	// the certificate would verify: opportunistic TLS (RFC 7435) encrypts
	// without authenticating, since refusing an unverifiable certificate
	// would only make us fall back to plain text.
	TLS *tls.Config
	// DialTimeout bounds each TCP connection attempt (default 30s).
	DialTimeout time.Duration
	// CommandTimeout bounds the wait for the greeting and for each
	// command's reply, and each write of the body (default 5m, RFC 5321
	// 4.5.3.2).
	CommandTimeout time.Duration
	// DataTimeout bounds the wait for the reply once the whole body is sent
	// (default 10m, RFC 5321 4.5.3.2.6).
	DataTimeout time.Duration
	// Logger receives a line per connection attempt (host, address,
	// outcome) and, at debug level, per recipient; never message bodies.
	// Nil discards.
	Logger *slog.Logger
	// Dial opens the TCP connections; nil uses a net.Dialer. For tests.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Client delivers messages to remote domains. It keeps no connection
// between calls, and is safe for concurrent use.
type Client struct {
	hostname  string
	port      string
	res       Resolver
	tls       *tls.Config
	dialTO    time.Duration
	cmdTO     time.Duration
	dataTO    time.Duration
	log       *slog.Logger
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	addrLimit int
}

// maxAddresses bounds the connection attempts of one delivery, as Postfix's
// smtp_mx_address_limit does: a domain listing dozens of dead MX hosts must
// not hold a queue worker for hours. Hosts past the limit are not tried.
const maxAddresses = 10

// New returns a Client for cfg. It panics when cfg.Resolver is nil: that is
// a wiring mistake, not something to find out at the first delivery.
func New(cfg Config) *Client {
	if cfg.Resolver == nil {
		panic("outbound: Config.Resolver is nil")
	}
	c := &Client{
		hostname:  cfg.Hostname,
		port:      strconv.Itoa(cfg.Port),
		res:       cfg.Resolver,
		tls:       cfg.TLS,
		dialTO:    orDefault(cfg.DialTimeout, 30*time.Second),
		cmdTO:     orDefault(cfg.CommandTimeout, 5*time.Minute),
		dataTO:    orDefault(cfg.DataTimeout, 10*time.Minute),
		log:       cfg.Logger,
		dial:      cfg.Dial,
		addrLimit: maxAddresses,
	}
	if c.hostname == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			c.hostname = h
		} else {
			c.hostname = "localhost"
		}
	}
	if cfg.Port == 0 {
		c.port = "25"
	}
	if c.tls == nil {
		c.tls = &tls.Config{}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.dial == nil {
		var d net.Dialer
		c.dial = d.DialContext
	}
	return c
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Status is the outcome of a delivery for one recipient.
type Status int

const (
	// Deferred: not delivered this time, try again later. It is the zero
	// value so that a result nothing decided is retried, never lost nor
	// bounced.
	Deferred Status = iota
	// Delivered: the remote server took responsibility for the message.
	Delivered
	// Failed: permanently refused; the sender gets a bounce.
	Failed
)

func (s Status) String() string {
	switch s {
	case Deferred:
		return "deferred"
	case Delivered:
		return "delivered"
	case Failed:
		return "failed"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// Result is the outcome of a delivery for one recipient.
type Result struct {
	Recipient string
	Status    Status
	// Reply is the reply that decided, such as "550 5.1.1 <x@y>: no such
	// user", always with an enhanced status code (X.0.0 derived from the
	// class when the server gave none) and on one line. Failures without a
	// server reply (DNS, connection) get our own text in the same form, such
	// as "451 4.4.1 connection refused by mx.example.org [192.0.2.1]".
	Reply string
	// RemoteMTA is the MX host of the session that decided (its address
	// when the MX was an IP literal), "" when no session did: DNS
	// failures, refused connections, a canceled context.
	RemoteMTA string
	// TLS tells whether Reply came over an encrypted connection.
	TLS bool
}

// Deliver sends body from the envelope sender from ("" for the null sender
// of bounces) to rcpts, all at domain, in one SMTP transaction, and returns
// one Result per recipient, in the order of rcpts. body is the message as
// stored, CRLF line endings. Canceling ctx aborts the delivery: whoever is
// not yet decided is Deferred.
func (c *Client) Deliver(ctx context.Context, domain, from string, rcpts []string, body []byte) []Result {
	d := &delivery{
		Client:  c,
		domain:  domain,
		from:    from,
		rcpts:   rcpts,
		body:    body,
		results: make([]Result, len(rcpts)),
		done:    make([]bool, len(rcpts)),
		log:     c.log.With("domain", domain),
	}
	for i, r := range rcpts {
		d.results[i].Recipient = r
	}
	d.run(ctx)
	// Debug: the caller logs each result it records; the attempts above
	// already said at Info which host did what.
	for _, r := range d.results {
		d.log.Debug("outbound result", "rcpt", r.Recipient, "status", r.Status.String(), "reply", r.Reply, "remote_mta", r.RemoteMTA, "tls", r.TLS)
	}
	return d.results
}

// delivery is the state of one Deliver call.
type delivery struct {
	*Client
	domain  string
	from    string
	rcpts   []string
	body    []byte
	results []Result
	done    []bool // results[i] is decided
	log     *slog.Logger
}

// decide sets the result of recipient i, unless it is already decided.
func (d *delivery) decide(i int, st Status, r reply, remote string, tls bool) {
	if d.done[i] {
		return
	}
	d.done[i] = true
	d.results[i] = Result{Recipient: d.rcpts[i], Status: st, Reply: r.String(), RemoteMTA: remote, TLS: tls}
}

// decideRest sets the result of every recipient not yet decided.
func (d *delivery) decideRest(st Status, r reply, remote string, tls bool) {
	for i := range d.rcpts {
		d.decide(i, st, r, remote, tls)
	}
}

// attempt is how a connection to one address ended, when it decided
// nothing: the reason, kept in case no other address does better.
type attempt struct {
	reason    reply
	remote    string // the host we were connected to, "" if none
	tls       bool
	final     bool // a 5xx greeting or EHLO: final if no later host helps
	tlsFailed bool // the TLS handshake failed: worth a retry in the clear
}

func (d *delivery) run(ctx context.Context) {
	// Addresses with a CR or LF would smuggle commands into the session;
	// addresses that are not ASCII need SMTPUTF8, checked per server.
	if badAddress(d.from) {
		d.decideRest(Failed, ownReply(553, "5.1.7", "invalid sender address %q", d.from), "", false)
		return
	}
	for i, r := range d.rcpts {
		if badAddress(r) || r == "" {
			d.decide(i, Failed, ownReply(553, "5.1.3", "invalid recipient address %q", r), "", false)
		}
	}
	if !slices.Contains(d.done, false) {
		return
	}

	hosts, implicit, stop := d.mxHosts(ctx)
	if stop != nil {
		d.decideRest(stop.status(), *stop, "", false)
		return
	}

	var (
		last      attempt
		tried     = map[string]bool{}
		exhausted = true // every host and address was tried
		addrFound bool   // some host has an address, or may have one on a retry
	)
hosts:
	for _, host := range hosts {
		ips, err := d.addresses(ctx, host)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				last = attempt{reason: ownReply(451, "4.4.4", "mail host %s has no address", host)}
			} else {
				last = attempt{reason: ownReply(451, "4.4.3", "DNS lookup of mail host %s failed: %v", host, err)}
				addrFound = true // a later retry may find one
			}
			d.log.Info("outbound host skipped", "host", host, "reason", last.reason.String())
			continue
		}
		addrFound = true
		for _, ip := range ips {
			if ctx.Err() != nil || len(tried) == d.addrLimit {
				exhausted = false
				break hosts
			}
			if tried[ip.String()] {
				continue
			}
			tried[ip.String()] = true
			a, decided := d.session(ctx, host, ip, true)
			if !decided && a.tlsFailed && ctx.Err() == nil {
				a, decided = d.session(ctx, host, ip, false)
			}
			if decided {
				return
			}
			last = a
		}
	}

	if last.reason.code == 0 {
		// Not reachable: every host either failed its lookup or had an
		// address tried, and both set last. Deferral is the safe answer.
		last.reason = ownReply(451, "4.4.0", "no mail host of %s could be tried", d.domain)
	}
	switch {
	case ctx.Err() != nil:
		d.decideRest(Deferred, ownReply(451, "4.3.0", "delivery interrupted: %v", context.Cause(ctx)), "", false)
	case !addrFound && implicit:
		// The domain exists (its MX query said NOERROR) but has neither MX
		// nor address: it receives no mail. RFC 5321 5.1 makes this an error.
		d.decideRest(Failed, ownReply(550, "5.4.4", "domain %s has no MX and no address record", d.domain), "", false)
	case exhausted && last.final:
		d.decideRest(Failed, last.reason, last.remote, last.tls)
	default:
		r := last.reason
		if r.class() == 5 {
			// A 5xx that is not final still keeps its text, as a 4xx.
			r = reply{code: 451, enhanced: "4" + strings.TrimPrefix(r.enhanced, "5"), text: r.text}
		}
		d.decideRest(Deferred, r, last.remote, last.tls)
	}
}

// badAddress reports an envelope address we will not put on a command line.
func badAddress(a string) bool {
	return strings.ContainsAny(a, "\r\n<>\x00") || len(a) > 1000
}

// mxHosts returns the hosts to try in order, whether they are the domain
// itself for want of MX records, or the reply that settles every recipient
// without connecting.
func (d *delivery) mxHosts(ctx context.Context) (hosts []string, implicit bool, stop *reply) {
	name, err := asciiDomain(d.domain)
	if err != nil {
		r := ownReply(550, "5.1.2", "invalid domain %q: %v", d.domain, err)
		return nil, false, &r
	}
	mxs, err := d.res.LookupMX(ctx, name)
	switch {
	case errors.Is(err, ErrNotFound):
		r := ownReply(550, "5.1.2", "domain %s does not exist", name)
		return nil, false, &r
	case err != nil:
		r := ownReply(451, "4.4.3", "DNS lookup of MX for %s failed: %v", name, err)
		return nil, false, &r
	case len(mxs) == 0:
		// RFC 5321 5.1: no MX means the domain is its own mail host, at
		// preference 0.
		return []string{name}, true, nil
	}

	// A null MX among other records is a misconfiguration (RFC 7505 3);
	// drop it and use the others. Only when nothing else is left is it a
	// refusal.
	mxs = slices.DeleteFunc(slices.Clone(mxs), func(mx *net.MX) bool { return mx == nil || strings.TrimSuffix(mx.Host, ".") == "" })
	if len(mxs) == 0 {
		r := ownReply(556, "5.1.10", "domain %s has a null MX (RFC 7505): it accepts no mail", name)
		return nil, false, &r
	}
	// Preference order, random among equal preferences (RFC 5321 5.1) so
	// that the load spreads as the domain asked.
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	for _, mx := range mxs {
		h := strings.ToLower(strings.TrimSuffix(mx.Host, "."))
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts, false, nil
}

// asciiDomain gives the A-label form of an internationalized domain, the
// form DNS knows. ASCII names are left alone, whatever IDNA would say of
// them: the DNS decides whether they exist.
func asciiDomain(domain string) (string, error) {
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" {
		return "", errors.New("empty domain")
	}
	for i := 0; i < len(domain); i++ {
		if domain[i] >= 0x80 {
			return idna.Lookup.ToASCII(domain)
		}
	}
	return strings.ToLower(domain), nil
}

// addresses resolves an MX host. An MX must name a host, but an IP literal
// found there is taken as itself rather than refused.
func (d *delivery) addresses(ctx context.Context, host string) ([]net.IP, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}, nil
	}
	ips, err := d.res.LookupIP(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("no A or AAAA record for %s: %w", host, ErrNotFound)
	}
	return ips, nil
}

// needsUTF8 reports whether the envelope needs SMTPUTF8.
func (d *delivery) needsUTF8() bool {
	if !isASCII(d.from) {
		return true
	}
	for i, r := range d.rcpts {
		if !d.done[i] && !isASCII(r) {
			return true
		}
	}
	return false
}

// headerNotASCII reports raw UTF-8 in the header section, which SMTPUTF8
// (RFC 6532) would cover; 8-bit bytes anywhere call for BODY=8BITMIME.
func headerNotASCII(body []byte) bool {
	if i := bytes.Index(body, []byte("\r\n\r\n")); i >= 0 {
		body = body[:i]
	}
	return !isASCII(body)
}

func isASCII[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// session runs one SMTP connection to ip. It returns decided when it
// settled every recipient; otherwise the attempt says why not.
func (d *delivery) session(ctx context.Context, host string, ip net.IP, tryTLS bool) (a attempt, decided bool) {
	addr := net.JoinHostPort(ip.String(), d.port)
	where := host + " [" + ip.String() + "]"
	if host == ip.String() {
		where = "[" + host + "]"
	}
	log := d.log.With("host", host, "addr", addr)

	dctx, cancel := context.WithTimeout(ctx, d.dialTO)
	nc, err := d.dial(dctx, "tcp", addr)
	cancel()
	if err != nil {
		a = attempt{reason: dialFailure(err, where)}
		log.Info("outbound connect failed", "outcome", a.reason.String())
		return a, false
	}
	// Closing the connection is the one way to interrupt a blocked read or
	// write when ctx ends; the deadlines below only bound single steps.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	s := newSession(nc, d.cmdTO, d.dataTO)
	defer func() {
		stop()
		s.close()
	}()

	// lost describes a session that broke: the connection, a timeout, a
	// reply we cannot read, or ctx.
	lost := func(step string, err error) reply {
		switch {
		case ctx.Err() != nil:
			return ownReply(451, "4.3.0", "delivery interrupted: %v", context.Cause(ctx))
		case errors.Is(err, errProtocol):
			return ownReply(451, "4.5.0", "%s after %s: %v", where, step, err)
		case isTimeout(err):
			return ownReply(451, "4.4.2", "timeout waiting for %s after %s", where, step)
		}
		return ownReply(451, "4.4.2", "connection to %s lost after %s: %v", where, step, err)
	}
	// refused ends an attempt the server turned down before the
	// transaction; final marks a 5xx.
	refused := func(step string, r reply) (attempt, bool) {
		s.quit()
		a := attempt{reason: r, remote: host, tls: s.tls, final: r.class() == 5}
		if r.class() != 4 && r.class() != 5 {
			a.reason = ownReply(451, "4.5.0", "%s answered %s with %s", where, step, r.String())
			a.final = false
		}
		log.Info("outbound session refused", "step", step, "tls", s.tls, "outcome", a.reason.String())
		return a, false
	}
	broken := func(step string, err error) (attempt, bool) {
		a := attempt{reason: lost(step, err), remote: host, tls: s.tls}
		log.Info("outbound session failed", "step", step, "tls", s.tls, "outcome", a.reason.String())
		return a, false
	}

	r, err := s.readReply(d.cmdTO)
	if err != nil {
		return broken("connect", err)
	}
	if r.class() != 2 {
		return refused("connect", r)
	}
	if r, err = s.hello(d.hostname); err != nil {
		return broken("EHLO", err)
	} else if r.class() != 2 {
		return refused("EHLO", r)
	}

	if tryTLS && s.has("STARTTLS") {
		cfg := d.tls.Clone()
		cfg.InsecureSkipVerify = true // opportunistic: see Config.TLS
		if cfg.MinVersion == 0 {
			// Any TLS beats the plain text we would fall back to; Go's
			// client default (1.2) would send old servers there.
			cfg.MinVersion = tls.VersionTLS10
		}
		if net.ParseIP(host) == nil {
			cfg.ServerName = host
		}
		r, err := s.startTLS(ctx, cfg)
		switch {
		case errors.Is(err, errTLSHandshake):
			log.Info("outbound STARTTLS failed, retrying without TLS", "err", err)
			return attempt{reason: lost("STARTTLS", err), remote: host, tlsFailed: true}, false
		case err != nil:
			return broken("STARTTLS", err)
		case !s.tls:
			log.Info("outbound STARTTLS refused, going on in the clear", "reply", r.String())
		default:
			st := s.nc.(*tls.Conn).ConnectionState()
			log.Info("outbound TLS established", "version", tls.VersionName(st.Version),
				"cipher", tls.CipherSuiteName(st.CipherSuite), "verified", d.verified(st, host))
			if r, err = s.hello(d.hostname); err != nil {
				return broken("EHLO", err)
			} else if r.class() != 2 {
				return refused("EHLO", r)
			}
		}
	}

	// MAIL FROM with the parameters the server understands and the message
	// needs. Without 8BITMIME an 8-bit body still goes: nearly every server
	// copes, and refusing would only bounce it.
	cmd := "MAIL FROM:<" + d.from + ">"
	if s.has("SIZE") {
		cmd += " SIZE=" + strconv.Itoa(len(d.body))
	}
	if s.has("8BITMIME") && !isASCII(d.body) {
		cmd += " BODY=8BITMIME"
	}
	if d.needsUTF8() {
		if !s.has("SMTPUTF8") {
			s.quit()
			r := ownReply(553, "5.6.7", "%s does not support SMTPUTF8, needed for a non-ASCII address", where)
			d.decideRest(Failed, r, host, s.tls)
			log.Info("outbound transaction refused", "step", "MAIL", "outcome", r.String())
			return attempt{}, true
		}
		cmd += " SMTPUTF8"
	} else if s.has("SMTPUTF8") && headerNotASCII(d.body) {
		cmd += " SMTPUTF8"
	}
	if r, err = s.cmd(cmd); err != nil {
		return broken("MAIL FROM", err)
	}
	switch r.class() {
	case 2:
	case 5:
		s.quit()
		d.decideRest(Failed, r, host, s.tls)
		log.Info("outbound transaction refused", "step", "MAIL", "tls", s.tls, "outcome", r.String())
		return attempt{}, true
	default:
		return refused("MAIL FROM", r)
	}

	// From here on the server has the transaction: every outcome is
	// recorded here and no other host is tried.
	var accepted []int
	for i, rcpt := range d.rcpts {
		if d.done[i] {
			continue
		}
		r, err := s.cmd("RCPT TO:<" + rcpt + ">")
		if err != nil {
			d.decideRest(Deferred, lost("RCPT TO", err), host, s.tls)
			log.Info("outbound session failed", "step", "RCPT TO", "tls", s.tls, "err", err)
			return attempt{}, true
		}
		switch r.class() {
		case 2:
			accepted = append(accepted, i)
		case 4, 5:
			d.decide(i, r.status(), r, host, s.tls)
		default:
			d.decide(i, Deferred, ownReply(451, "4.5.0", "%s answered RCPT TO with %s", where, r.String()), host, s.tls)
		}
		if r.code == 421 {
			// The server is closing the connection (RFC 5321 3.8).
			d.decideRest(Deferred, r, host, s.tls)
			log.Info("outbound session closed by server", "step", "RCPT TO", "tls", s.tls, "outcome", r.String())
			return attempt{}, true
		}
	}
	if len(accepted) == 0 {
		s.quit()
		log.Info("outbound no recipient accepted", "tls", s.tls)
		return attempt{}, true
	}

	r, err = s.data(d.body)
	if err != nil {
		d.decideRest(Deferred, lost("DATA", err), host, s.tls)
		log.Info("outbound session failed", "step", "DATA", "tls", s.tls, "err", err)
		return attempt{}, true
	}
	if r.class() == 3 {
		r = ownReply(451, "4.5.0", "%s answered the end of DATA with %s", where, r.String())
	}
	for _, i := range accepted {
		d.decide(i, r.status(), r, host, s.tls)
	}
	s.quit()
	log.Info("outbound transaction done", "tls", s.tls, "accepted", len(accepted), "outcome", r.String())
	return attempt{}, true
}

// dialFailure words a failed connection attempt.
func dialFailure(err error, where string) reply {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ownReply(451, "4.4.1", "connection refused by %s", where)
	case isTimeout(err):
		return ownReply(451, "4.4.1", "connection to %s timed out", where)
	}
	return ownReply(451, "4.4.1", "cannot connect to %s: %v", where, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// verified tells, for the log only, whether the server's certificate would
// pass verification against cfg.TLS's roots for host.
func (d *delivery) verified(st tls.ConnectionState, host string) bool {
	certs := st.PeerCertificates
	if len(certs) == 0 {
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{DNSName: host, Roots: d.tls.RootCAs, Intermediates: inter})
	return err == nil
}
