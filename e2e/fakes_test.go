package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"clustermail/certs"
)

// The outbound tests' small internet on loopback: a DNS server the cluster
// is pointed at with --dns, and fake remote MTAs on 127.0.0.2, 127.0.0.3, …
// all on the port of the DNS server, given to the cluster as
// --outbound-port, as real MX hosts all listen on 25.
//
// The DNS server holds 127.0.0.1:port (TCP and UDP) for the whole test.
// Every other listener of the e2e tests binds 127.0.0.1:0, which the
// kernel never hands out while 127.0.0.1:port is bound, so no parallel test
// is ever given this port: 127.0.0.N:port belongs to this test alone.

// ---- DNS ----

// fakeDNS is an authoritative server whose zone the test changes at run
// time. A name with any record exists (NOERROR, possibly with an empty
// answer for the type asked); any other name is NXDOMAIN.
type fakeDNS struct {
	addr string
	port int

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN
}

func newFakeDNS(t *testing.T) *fakeDNS {
	t.Helper()
	d := &fakeDNS{records: map[string][]dns.RR{}}
	var (
		ln net.Listener
		pc net.PacketConn
	)
	for range 20 {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if pc, err = net.ListenPacket("udp", ln.Addr().String()); err == nil {
			break
		}
		ln.Close()
		ln = nil
	}
	if ln == nil {
		t.Fatal("no loopback port free for both UDP and TCP")
	}
	d.addr, d.port = ln.Addr().String(), ln.Addr().(*net.TCPAddr).Port
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: d}, {Listener: ln, Handler: d}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return d
}

// set replaces the records of name with records given in zone-file syntax
// without the owner, e.g. set("remote.test", "MX 10 mx.remote.test.").
// No records at all removes the name: it becomes NXDOMAIN.
func (d *fakeDNS) set(t *testing.T, name string, records ...string) {
	t.Helper()
	fqdn := dns.Fqdn(strings.ToLower(name))
	var rrs []dns.RR
	for _, r := range records {
		rr, err := dns.NewRR(fqdn + " 5 IN " + r)
		if err != nil {
			t.Fatalf("DNS record %q for %s: %v", r, name, err)
		}
		rrs = append(rrs, rr)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(rrs) == 0 {
		delete(d.records, fqdn)
		return
	}
	d.records[fqdn] = rrs
}

// host is the usual pair: domain's one MX, and that MX's address.
func (d *fakeDNS) mx(t *testing.T, domain, ip string) {
	t.Helper()
	d.set(t, domain, "MX 10 mx."+domain+".")
	d.set(t, "mx."+domain, "A "+ip)
}

func (d *fakeDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) == 1 {
		q := req.Question[0]
		d.mu.Lock()
		rrs, exists := d.records[strings.ToLower(q.Name)]
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
		d.mu.Unlock()
	} else {
		m.Rcode = dns.RcodeFormatError
	}
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
	}
	_ = w.WriteMsg(m)
}

// ---- remote MTAs ----

// transaction is one MAIL FROM seen by a fake MTA, and how it ended.
type transaction struct {
	From    string
	Rcpts   []string // accepted at RCPT
	Refused []string // refused at RCPT
	Body    string   // as received, when DATA got that far
	Code    int      // the reply to the end of DATA (or to DATA); 0 if no DATA
	TLS     bool     // the session had done STARTTLS
	Helo    string
}

// delivered reports whether the MTA took the message (250 after DATA).
func (tx transaction) delivered() bool { return tx.Code == 250 }

// fakeMTA is a remote mail server the test drives: it records every
// transaction and answers as its policies say. A policy returns nil to
// accept, or the *smtp.SMTPError to answer.
type fakeMTA struct {
	t    *testing.T
	addr string
	tls  *tls.Config

	mu   sync.Mutex
	srv  *smtp.Server
	rcpt func(to string) error
	data func(tx transaction) error
	txs  []*transaction
}

// smtpReply builds a reply for a policy: smtpReply(550, "5.1.1 no such user").
func smtpReply(code int, text string) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: code, Message: text}
	if st, rest, ok := strings.Cut(text, " "); ok {
		p := strings.Split(st, ".")
		if len(p) == 3 {
			a, _ := strconv.Atoi(p[0])
			b, _ := strconv.Atoi(p[1])
			c, _ := strconv.Atoi(p[2])
			e.EnhancedCode, e.Message = smtp.EnhancedCode{a, b, c}, rest
		}
	}
	return e
}

// newFakeMTA starts an MTA on ip:port offering STARTTLS (with a
// self-signed certificate, as opportunistic TLS expects) and accepting
// everything.
func newFakeMTA(t *testing.T, ip string, port int) *fakeMTA {
	t.Helper()
	cf, kf, err := certs.WriteSelfSigned(t.TempDir(), []string{"mx.remote.test", ip})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeMTA{t: t, addr: net.JoinHostPort(ip, strconv.Itoa(port)), tls: &tls.Config{Certificates: []tls.Certificate{cert}}}
	m.start()
	t.Cleanup(m.stop)
	return m
}

// start (again) listens and serves.
func (m *fakeMTA) start() {
	m.t.Helper()
	ln, err := net.Listen("tcp", m.addr)
	if err != nil {
		m.t.Fatalf("fake MTA listen %s: %v", m.addr, err)
	}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &mtaSession{m: m, c: c}, nil
	}))
	s.Domain = "mx.remote.test"
	s.TLSConfig = m.tls
	s.ReadTimeout, s.WriteTimeout = 30*time.Second, 30*time.Second
	s.ErrorLog = quietLogger{} // connection errors after a test ends must not call t.Log
	m.mu.Lock()
	m.srv = s
	m.mu.Unlock()
	go func() { _ = s.Serve(ln) }()
}

// stop closes the listener and every connection: the host is down
// (connection refused) until start.
func (m *fakeMTA) stop() {
	m.mu.Lock()
	s := m.srv
	m.srv = nil
	m.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
}

// setRcpt and setData change the policies; nil accepts.
func (m *fakeMTA) setRcpt(f func(to string) error) { m.mu.Lock(); m.rcpt = f; m.mu.Unlock() }
func (m *fakeMTA) setData(f func(tx transaction) error) {
	m.mu.Lock()
	m.data = f
	m.mu.Unlock()
}

// transactions returns a copy of everything seen so far.
func (m *fakeMTA) transactions() []transaction {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]transaction, len(m.txs))
	for i, tx := range m.txs {
		out[i] = *tx
		out[i].Rcpts = append([]string(nil), tx.Rcpts...)
		out[i].Refused = append([]string(nil), tx.Refused...)
	}
	return out
}

// with returns the transactions whose body carries the subject; "" gives
// every transaction, those that never got to DATA too.
func (m *fakeMTA) with(subject string) []transaction {
	var out []transaction
	for _, tx := range m.transactions() {
		if subject == "" || strings.Contains(tx.Body, "\r\nSubject: "+subject+"\r\n") {
			out = append(out, tx)
		}
	}
	return out
}

// deliveries counts the transactions that ended in 250 with the subject.
func (m *fakeMTA) deliveries(subject string) int {
	n := 0
	for _, tx := range m.with(subject) {
		if tx.delivered() {
			n++
		}
	}
	return n
}

type mtaSession struct {
	m  *fakeMTA
	c  *smtp.Conn
	tx *transaction
}

func (s *mtaSession) Reset()        { s.tx = nil }
func (s *mtaSession) Logout() error { return nil }

func (s *mtaSession) Mail(from string, _ *smtp.MailOptions) error {
	_, isTLS := s.c.TLSConnectionState()
	s.tx = &transaction{From: from, TLS: isTLS, Helo: s.c.Hostname()}
	s.m.mu.Lock()
	s.m.txs = append(s.m.txs, s.tx)
	s.m.mu.Unlock()
	return nil
}

func (s *mtaSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	var err error
	if s.m.rcpt != nil {
		err = s.m.rcpt(to)
	}
	if err != nil {
		s.tx.Refused = append(s.tx.Refused, to)
		return err
	}
	s.tx.Rcpts = append(s.tx.Rcpts, to)
	return nil
}

func (s *mtaSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	s.tx.Body = string(b)
	if s.m.data != nil {
		err = s.m.data(*s.tx)
	}
	s.tx.Code = 250
	if se, ok := err.(*smtp.SMTPError); ok {
		s.tx.Code = se.Code
	} else if err != nil {
		s.tx.Code = 554
	}
	return err
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}
func (quietLogger) Println(...any)        {}

// transactionsString renders transactions for a failure message.
func transactionsString(txs []transaction) string {
	var b strings.Builder
	for i, tx := range txs {
		fmt.Fprintf(&b, "\n  #%d from=<%s> rcpts=%v refused=%v code=%d tls=%v", i, tx.From, tx.Rcpts, tx.Refused, tx.Code, tx.TLS)
	}
	return b.String()
}
