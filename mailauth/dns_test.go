package mailauth

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testDNS is an authoritative server on loopback (UDP and TCP) for the
// tests' zones. Names in servfail answer SERVFAIL; names with records of
// another type only answer NOERROR and nothing; unknown names NXDOMAIN.
type testDNS struct {
	addr string

	mu       sync.Mutex
	records  map[string][]dns.RR
	servfail map[string]bool
	dropped  map[string]bool // never answered, as a dead authoritative server
}

func newTestDNS(t *testing.T) *testDNS {
	t.Helper()
	d := &testDNS{records: map[string][]dns.RR{}, servfail: map[string]bool{}, dropped: map[string]bool{}}
	// UDP and TCP on one port: the port the kernel picks for UDP may be
	// taken for TCP (another test's connection), so try a few.
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ln == nil; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		d.addr = pc.LocalAddr().String()
		if ln, err = net.Listen("tcp", d.addr); err != nil {
			pc.Close()
			if try == 20 {
				t.Fatal(err)
			}
		}
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: d}, {Listener: ln, Handler: d}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("test DNS server did not start")
		}
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return d
}

// txt publishes a TXT record, cut into 255-octet strings as a zone file
// would need.
func (d *testDNS) txt(name, value string) {
	var parts []string
	for len(value) > 255 {
		parts, value = append(parts, value[:255]), value[255:]
	}
	parts = append(parts, value)
	d.add(&dns.TXT{Hdr: d.hdr(name, dns.TypeTXT), Txt: parts})
}

func (d *testDNS) a(name, ip string) {
	d.add(&dns.A{Hdr: d.hdr(name, dns.TypeA), A: net.ParseIP(ip)})
}

func (d *testDNS) fail(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.servfail[dns.Fqdn(strings.ToLower(name))] = true
}

func (d *testDNS) drop(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dropped[dns.Fqdn(strings.ToLower(name))] = true
}

func (d *testDNS) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: dns.Fqdn(strings.ToLower(name)), Rrtype: t, Class: dns.ClassINET, Ttl: 5}
}

func (d *testDNS) add(rr dns.RR) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.records[rr.Header().Name] = append(d.records[rr.Header().Name], rr)
}

func (d *testDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) == 1 {
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		d.mu.Lock()
		if d.dropped[name] {
			d.mu.Unlock()
			return
		}
		rrs, exists := d.records[name]
		switch {
		case d.servfail[name]:
			m.Rcode = dns.RcodeServerFailure
		case !exists:
			m.Rcode = dns.RcodeNameError
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype && m.Rcode == dns.RcodeSuccess {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
		d.mu.Unlock()
	}
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
	}
	_ = w.WriteMsg(m)
}

// silentDNS is a UDP socket that never answers: a DNS server that is down.
func silentDNS(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}
