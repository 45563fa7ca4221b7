package outbound

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/miekg/dns"

	"clustermail/dnsclient"
)

// Resolver answers the DNS questions delivery needs. DNSResolver is the
// real one; tests may use a fake.
//
// A Resolver returns an error wrapping ErrNotFound when the name does not
// exist (NXDOMAIN), and any other error for a failure that may pass
// (timeout, SERVFAIL, unreachable server): delivery bounces on the first and
// retries later on the second. A name that exists but has no record of the
// asked type (NOERROR with an empty answer) is an empty result and a nil
// error. Host names come back absolute, with the trailing dot, the way
// net.Resolver gives them; a null MX (RFC 7505) has the host ".".
type Resolver interface {
	LookupMX(ctx context.Context, domain string) ([]*net.MX, error)
	// LookupIP returns the A and AAAA addresses of host.
	LookupIP(ctx context.Context, host string) ([]net.IP, error)
}

// ErrNotFound is wrapped by Resolver errors for a name that does not exist
// (NXDOMAIN). Every other Resolver error is temporary.
var ErrNotFound = errors.New("domain name does not exist")

const (
	// defaultDNSTimeout bounds one query to one server when resolv.conf
	// does not say; the caller's context bounds the whole lookup.
	defaultDNSTimeout = 5 * time.Second
)

// DNSResolver is a Resolver that asks recursive DNS servers directly with
// miekg/dns. Unlike net.Resolver it keeps NXDOMAIN apart from "no records of
// that type", which delivery needs: the first bounces the message, the second
// means "no MX, use the address records".
type DNSResolver struct {
	servers []string      // host:port, asked in order until one answers
	timeout time.Duration // per query and server
}

// NewDNSResolver returns a resolver asking the DNS server at addr (host:port)
// over UDP, falling back to TCP when an answer is truncated. An empty addr
// means the servers listed in /etc/resolv.conf.
func NewDNSResolver(addr string) (*DNSResolver, error) {
	servers, timeout, err := dnsclient.Servers(addr)
	if err != nil {
		return nil, fmt.Errorf("outbound: %w", err)
	}
	if timeout == 0 {
		timeout = defaultDNSTimeout
	}
	return &DNSResolver{servers: servers, timeout: timeout}, nil
}

// LookupMX returns the MX records of domain, in the order of the answer.
func (r *DNSResolver) LookupMX(ctx context.Context, domain string) ([]*net.MX, error) {
	resp, err := r.query(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var mxs []*net.MX
	// Records of the asked type only: a recursive server puts the CNAME
	// chain it followed before them.
	for _, rr := range resp.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			mxs = append(mxs, &net.MX{Host: mx.Mx, Pref: mx.Preference})
		}
	}
	return mxs, nil
}

// LookupIP returns the IPv4 then the IPv6 addresses of host. When one of
// the two queries fails but the other found addresses, those are returned:
// they are enough to deliver.
func (r *DNSResolver) LookupIP(ctx context.Context, host string) ([]net.IP, error) {
	var ips []net.IP
	var errs []error
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		resp, err := r.query(ctx, host, qtype)
		if errors.Is(err, ErrNotFound) {
			// NXDOMAIN is about the name, whatever the type: decisive,
			// unless the other type disagreed and gave addresses.
			if len(ips) == 0 {
				return nil, err
			}
			break
		} else if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rr := range resp.Answer {
			switch rr := rr.(type) {
			case *dns.A:
				ips = append(ips, rr.A)
			case *dns.AAAA:
				ips = append(ips, rr.AAAA)
			}
		}
	}
	if len(ips) > 0 || len(errs) == 0 {
		return ips, nil
	}
	return nil, errors.Join(errs...)
}

// query asks each server in turn until one gives a definite answer
// (NOERROR or NXDOMAIN). SERVFAIL and REFUSED move on to the next server,
// as the system resolver does.
func (r *DNSResolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	qname := dns.Fqdn(name)
	what := dns.TypeToString[qtype] + " " + qname
	if _, ok := dns.IsDomainName(qname); !ok || qname == "." {
		return nil, fmt.Errorf("dns %s: not a valid domain name: %w", what, ErrNotFound)
	}
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	m.SetEdns0(dnsclient.EDNSSize, false)

	var lastErr error
	for _, srv := range r.servers {
		resp, err := dnsclient.Exchange(ctx, m, srv, r.timeout)
		if err != nil {
			lastErr = fmt.Errorf("dns %s: server %s: %w", what, srv, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess:
			return resp, nil
		case dns.RcodeNameError:
			return nil, fmt.Errorf("dns %s: %w", what, ErrNotFound)
		default:
			lastErr = fmt.Errorf("dns %s: server %s answered %s", what, srv, rcodeString(resp.Rcode))
		}
	}
	return nil, lastErr
}

func rcodeString(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return "rcode " + strconv.Itoa(rcode)
}
