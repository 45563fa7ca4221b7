package mailauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"clustermail/dnsclient"
)

// Resolver answers the DNS questions of SPF, DKIM and DMARC. Its methods
// match net.Resolver's, which the SPF and DKIM libraries are written
// against: they tell "does not exist" from "try later" only through a
// *net.DNSError returned as is (IsNotFound, or Temporary), never wrapped.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// DNSResolver asks recursive servers directly with miekg/dns, so the
// node's --dns setting applies to the checks as it does to delivery.
type DNSResolver struct {
	servers []string
	// perTry bounds one query to one server: a message's whole budget
	// (Config.Timeout) must leave room for a second try and other names.
	perTry time.Duration

	// A server that has stopped answering costs every message its whole
	// budget. After a run of timeouts with no answer between them, a probe
	// asks for the root's NS, which any working recursive server answers
	// from its cache: when that times out too, queries fail at once
	// (temperror, so mail still flows) until downUntil. Timeouts alone are
	// not enough: a sender can make them with a domain whose servers never
	// answer, and must not switch the checks off for everyone.
	mu        sync.Mutex
	timeouts  int
	probing   bool
	downUntil time.Time
}

const (
	downAfter = 3                // consecutive timeouts
	downFor   = 10 * time.Second // before probing again
)

// NewDNSResolver asks the server at addr (host:port), or the servers of
// /etc/resolv.conf when addr is empty.
func NewDNSResolver(addr string) (*DNSResolver, error) {
	servers, _, err := dnsclient.Servers(addr)
	if err != nil {
		return nil, fmt.Errorf("mailauth: %w", err)
	}
	return &DNSResolver{servers: servers, perTry: time.Second}, nil
}

// LookupTXT returns one string per record, its character-strings joined,
// as net.Resolver does.
func (r *DNSResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	resp, err := r.query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range resp.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out, nil
}

// LookupMX returns the MX records of name.
func (r *DNSResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	resp, err := r.query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var out []*net.MX
	for _, rr := range resp.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
		}
	}
	return out, nil
}

// LookupIPAddr returns the A and AAAA addresses of host.
func (r *DNSResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	var out []net.IPAddr
	var firstErr error
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		resp, err := r.query(ctx, host, qt)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, rr := range resp.Answer {
			switch rr := rr.(type) {
			case *dns.A:
				out = append(out, net.IPAddr{IP: rr.A})
			case *dns.AAAA:
				out = append(out, net.IPAddr{IP: rr.AAAA})
			}
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	return nil, firstErr
}

// LookupAddr returns the PTR names of an IP address.
func (r *DNSResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	rev, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: addr}
	}
	resp, err := r.query(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range resp.Answer {
		if p, ok := rr.(*dns.PTR); ok {
			out = append(out, p.Ptr)
		}
	}
	return out, nil
}

// query asks each server in turn, twice round at most, until one gives a
// definite answer or ctx ends. Errors are *net.DNSError: IsNotFound for
// NXDOMAIN, IsTimeout or IsTemporary for everything that may pass.
func (r *DNSResolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	qname := dns.Fqdn(name)
	if _, ok := dns.IsDomainName(qname); !ok || qname == "." {
		return nil, &net.DNSError{Err: "not a valid domain name", Name: name, IsNotFound: true}
	}
	if r.down() {
		return nil, &net.DNSError{Err: "DNS servers not answering lately", Name: name, IsTimeout: true}
	}
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	m.SetEdns0(dnsclient.EDNSSize, false)
	last := &net.DNSError{Err: "no DNS server answered", Name: name, IsTemporary: true}
	for round := 0; round < 2; round++ {
		for _, srv := range r.servers {
			if ctx.Err() != nil {
				return nil, &net.DNSError{Err: "lookup budget spent", Name: name, IsTimeout: true}
			}
			resp, err := dnsclient.Exchange(ctx, m, srv, r.perTry)
			if err != nil {
				var ne net.Error
				timeout := errors.As(err, &ne) && ne.Timeout()
				if timeout {
					r.noAnswer()
				}
				last = &net.DNSError{Err: err.Error(), Name: name, Server: srv, IsTemporary: true,
					IsTimeout: timeout || ctx.Err() != nil}
				continue
			}
			r.answered()
			switch resp.Rcode {
			case dns.RcodeSuccess:
				return resp, nil
			case dns.RcodeNameError:
				return nil, &net.DNSError{Err: "no such host", Name: name, Server: srv, IsNotFound: true}
			}
			last = &net.DNSError{Err: "server answered " + dns.RcodeToString[resp.Rcode], Name: name, Server: srv, IsTemporary: true}
		}
	}
	return nil, last
}

// down reports whether the servers are taken for unreachable.
func (r *DNSResolver) down() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Now().Before(r.downUntil)
}

func (r *DNSResolver) noAnswer() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timeouts++
	if r.timeouts >= downAfter && !r.probing {
		r.probing = true
		go r.probe()
	}
}

func (r *DNSResolver) probe() {
	m := new(dns.Msg)
	m.SetQuestion(".", dns.TypeNS)
	alive := false
	for _, srv := range r.servers {
		ctx, cancel := context.WithTimeout(context.Background(), r.perTry)
		_, err := dnsclient.Exchange(ctx, m, srv, r.perTry)
		cancel()
		if err == nil {
			alive = true
			break
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.probing, r.timeouts = false, 0
	if !alive {
		r.downUntil = time.Now().Add(downFor)
	}
}

func (r *DNSResolver) answered() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timeouts = 0
	r.downUntil = time.Time{}
}
