package outbound

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
)

// A lab is one test's small internet on loopback: a DNS server on
// 127.0.0.1:port (UDP and TCP) and mail servers on 127.0.0.2, 127.0.0.3, …
// all on that same port, as real MX hosts share port 25. Holding the DNS
// TCP listener on 127.0.0.1:port keeps any other lab of a parallel test
// from being given the same port, so 127.0.0.N:port is this lab's alone.
type lab struct {
	t    *testing.T
	port int
	zone *zone
	dns  string // host:port of the DNS server
}

const testHostname = "out.clustermail.test"

func newLab(t *testing.T, records ...string) *lab {
	t.Helper()
	z := &zone{records: map[string][]dns.RR{}, servfail: map[string]bool{}}
	for _, r := range records {
		z.add(t, r)
	}
	l := &lab{t: t, zone: z}
	l.dns, l.port = startDNS(t, z)
	return l
}

// ip returns the loopback address 127.0.0.n.
func ip(n int) string { return "127.0.0." + strconv.Itoa(n) }

// client returns a Client pointed at the lab, with short timeouts so that a
// bug shows as a failure, not a hung test.
func (l *lab) client(mod ...func(*Config)) *Client {
	res, err := NewDNSResolver(l.dns)
	if err != nil {
		l.t.Fatal(err)
	}
	cfg := Config{
		Hostname:       testHostname,
		Port:           l.port,
		Resolver:       res,
		DialTimeout:    2 * time.Second,
		CommandTimeout: 10 * time.Second,
		DataTimeout:    10 * time.Second,
		Logger:         slog.New(slog.NewTextHandler(l.t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mod {
		m(&cfg)
	}
	return New(cfg)
}

func (l *lab) listen(n int) net.Listener {
	l.t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip(n), strconv.Itoa(l.port)))
	if err != nil {
		l.t.Fatalf("listening on %s: %v", ip(n), err)
	}
	l.t.Cleanup(func() { ln.Close() })
	return ln
}

// ---- DNS ----

// zone is the DNS data of a lab, answered authoritatively by name and type.
type zone struct {
	mu       sync.Mutex
	records  map[string][]dns.RR // by lower-case owner name; a name with any record exists
	servfail map[string]bool
	tcp      int // queries that came over TCP
}

// add takes a record in zone file syntax, or "SERVFAIL name".
func (z *zone) add(t testing.TB, s string) {
	t.Helper()
	z.mu.Lock()
	defer z.mu.Unlock()
	if name, ok := strings.CutPrefix(s, "SERVFAIL "); ok {
		z.servfail[dns.Fqdn(strings.ToLower(name))] = true
		return
	}
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("record %q: %v", s, err)
	}
	name := strings.ToLower(rr.Header().Name)
	z.records[name] = append(z.records[name], rr)
}

func (z *zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	udp := w.LocalAddr().Network() == "udp"

	z.mu.Lock()
	if !udp {
		z.tcp++
	}
	rrs, exists := z.records[name]
	switch {
	case z.servfail[name]:
		m.Rcode = dns.RcodeServerFailure
	case !exists:
		m.Rcode = dns.RcodeNameError
	default:
		for _, rr := range rrs {
			// A CNAME comes along, first, as a recursive server
			// puts the chain it followed before the records.
			if t := rr.Header().Rrtype; t == q.Qtype || t == dns.TypeCNAME {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	z.mu.Unlock()

	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
	}
	if udp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

func (z *zone) tcpQueries() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.tcp
}

// startDNS serves z on 127.0.0.1, UDP and TCP on one port.
func startDNS(t *testing.T, z *zone) (addr string, port int) {
	t.Helper()
	var (
		ln net.Listener
		pc net.PacketConn
	)
	for range 20 {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		if pc, err = net.ListenPacket("udp", ln.Addr().String()); err == nil {
			break
		}
		ln.Close()
		ln = nil
	}
	if ln == nil {
		t.Fatal("no port free for both UDP and TCP")
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: z}, {Listener: ln, Handler: z}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return ln.Addr().String(), port
}

// ---- mail servers ----

// mta is a go-smtp server playing a remote MX host. Recipients decide the
// RCPT reply by their local part: "busy…" gets 450, "nouser…" 550,
// "closing…" 421, any other is accepted.
type mta struct {
	mu    sync.Mutex
	helos []helo // every EHLO that opened a go-smtp session, in order
	txs   []*tx  // every transaction that reached MAIL FROM
	conns map[string]bool

	mailErr    error       // reply to MAIL FROM
	dataErr    error       // reply to the end of DATA
	dropInData bool        // close the connection in the middle of DATA
	tlsConfig  *tls.Config // offer STARTTLS with this
	maxBytes   int64       // SIZE limit
	smtputf8   bool        // offer SMTPUTF8
}

type helo struct {
	name string
	tls  bool
}

type tx struct {
	conn     string // client address, one per TCP connection
	tls      bool
	from     string
	opts     smtp.MailOptions
	rcpts    []string
	body     []byte
	gotData  bool
	ehloName string
}

// startMTA runs m on 127.0.0.n of the lab.
func (l *lab) startMTA(n int, m *mta) *mta {
	m.conns = map[string]bool{}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		m.mu.Lock()
		m.helos = append(m.helos, helo{c.Hostname(), isTLS})
		m.conns[c.Conn().RemoteAddr().String()] = true
		m.mu.Unlock()
		return &mtaSession{m: m, c: c}, nil
	}))
	s.Domain = fmt.Sprintf("mx%d.lab.test", n)
	s.TLSConfig = m.tlsConfig
	s.MaxMessageBytes = m.maxBytes
	s.EnableSMTPUTF8 = m.smtputf8
	s.ReadTimeout = 10 * time.Second
	s.WriteTimeout = 10 * time.Second
	s.ErrorLog = log.New(io.Discard, "", 0)
	ln := l.listen(n)
	go s.Serve(ln)
	l.t.Cleanup(func() { s.Close() })
	return m
}

func (m *mta) transactions() []*tx {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*tx(nil), m.txs...)
}

func (m *mta) hellos() []helo {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]helo(nil), m.helos...)
}

func (m *mta) connections() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.conns)
}

type mtaSession struct {
	m  *mta
	c  *smtp.Conn
	tx *tx
}

func (s *mtaSession) Reset()        { s.tx = nil }
func (s *mtaSession) Logout() error { return nil }

func (s *mtaSession) Mail(from string, opts *smtp.MailOptions) error {
	if s.m.mailErr != nil {
		return s.m.mailErr
	}
	_, isTLS := s.c.TLSConnectionState()
	s.tx = &tx{conn: s.c.Conn().RemoteAddr().String(), tls: isTLS, from: from, ehloName: s.c.Hostname()}
	if opts != nil {
		s.tx.opts = *opts
	}
	s.m.mu.Lock()
	s.m.txs = append(s.m.txs, s.tx)
	s.m.mu.Unlock()
	return nil
}

func (s *mtaSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "busy"):
		return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "<" + to + ">: mailbox busy"}
	case strings.HasPrefix(to, "closing"):
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down"}
	case strings.HasPrefix(to, "nouser"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + ">: no such user"}
	}
	s.m.mu.Lock()
	s.tx.rcpts = append(s.tx.rcpts, to)
	s.m.mu.Unlock()
	return nil
}

func (s *mtaSession) Data(r io.Reader) error {
	if s.m.dropInData {
		// Take a little, then hang up: the client is mid-body.
		_, _ = io.ReadFull(r, make([]byte, 10))
		s.c.Conn().Close()
		return errors.New("dropped")
	}
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.m.mu.Lock()
	s.tx.body = body
	s.tx.gotData = true
	s.m.mu.Unlock()
	return s.m.dataErr
}

// fake is a hand-written server for what go-smtp's server will not do:
// refuse at the greeting, never greet, or send data right after "220" to
// STARTTLS. Everything else it accepts.
type fake struct {
	greeting   string      // first line, "" to stay silent
	noEHLO     bool        // answer EHLO with 502, as an RFC 821 server
	dataReply  string      // reply to DATA instead of 354, CRLF included
	caps       []string    // EHLO keywords
	starttls   string      // reply to STARTTLS, CRLF included, may carry extra lines
	tlsConfig  *tls.Config // handshake after starttls
	mu         sync.Mutex
	lines      []string // commands received, in order, over all connections
	deliveries int
}

func (l *lab) startFake(n int, f *fake) *fake {
	ln := l.listen(n)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f
}

func (f *fake) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if f.greeting == "" {
		_, _ = io.Copy(io.Discard, c) // until the client gives up
		return
	}
	br := bufio.NewReader(c)
	var w io.Writer = c
	say := func(s string) { _, _ = io.WriteString(w, s) }
	say(f.greeting + "\r\n")
	inData := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		if inData {
			if line == "." {
				inData = false
				f.mu.Lock()
				f.deliveries++
				f.mu.Unlock()
				say("250 2.0.0 queued\r\n")
			}
			continue
		}
		f.mu.Lock()
		f.lines = append(f.lines, line)
		f.mu.Unlock()
		verb, _, _ := strings.Cut(strings.ToUpper(line), " ")
		switch verb {
		case "EHLO":
			if f.noEHLO {
				say("502 5.5.1 what is EHLO\r\n")
				continue
			}
			lines := append([]string{"fake.lab.test"}, f.caps...)
			for i, l := range lines {
				sep := "-"
				if i == len(lines)-1 {
					sep = " "
				}
				say("250" + sep + l + "\r\n")
			}
		case "STARTTLS":
			say(f.starttls)
			if !strings.HasPrefix(f.starttls, "220") {
				continue
			}
			tc := tls.Server(c, f.tlsConfig)
			if err := tc.Handshake(); err != nil {
				return
			}
			br, w = bufio.NewReader(tc), tc
		case "DATA":
			if f.dataReply != "" {
				say(f.dataReply)
				continue
			}
			inData = true
			say("354 go ahead\r\n")
		case "QUIT":
			say("221 2.0.0 bye\r\n")
			return
		default:
			say("250 2.0.0 ok\r\n")
		}
	}
}

func (f *fake) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...)
}

// ---- TLS ----

var (
	certOnce sync.Once
	certTLS  tls.Certificate
)

// selfSigned returns a server TLS config with a self-signed certificate,
// as many real MX hosts have.
func selfSigned(t testing.TB) *tls.Config {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "mx.lab.test"},
			DNSNames:     []string{"mx.lab.test"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		certTLS = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	return &tls.Config{Certificates: []tls.Certificate{certTLS}}
}

// brokenTLS offers STARTTLS but fails every handshake.
func brokenTLS() *tls.Config {
	return &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return nil, errors.New("no certificate today")
	}}
}
