// Package dnsclient holds what every DNS user of the node shares: which
// recursive servers to ask (--dns, or /etc/resolv.conf) and one exchange
// with a server over UDP, again over TCP when the answer is truncated.
// The callers (delivery, the SPF/DKIM/DMARC checks) keep their own error
// semantics on top.
package dnsclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/miekg/dns"
)

// EDNSSize is the UDP payload size to advertise: the DNS flag day 2020
// value, small enough to avoid IP fragmentation. Bigger answers come back
// truncated and are asked again over TCP.
const EDNSSize = 1232

// Servers returns the servers to ask (host:port): addr alone when it is
// set, otherwise those of /etc/resolv.conf, with its timeout (0 when it
// says none).
func Servers(addr string) ([]string, time.Duration, error) {
	if addr != "" {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, 0, fmt.Errorf("DNS server address %q: %w", addr, err)
		}
		return []string{addr}, 0, nil
	}
	cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return nil, 0, fmt.Errorf("reading system DNS servers: %w", err)
	}
	if len(cc.Servers) == 0 {
		return nil, 0, errors.New("/etc/resolv.conf lists no nameserver")
	}
	var servers []string
	for _, s := range cc.Servers {
		servers = append(servers, net.JoinHostPort(s, cc.Port))
	}
	return servers, time.Duration(cc.Timeout) * time.Second, nil
}

// Exchange sends m to srv over UDP and asks again over TCP when the answer
// is truncated (RFC 1035 4.2.1, RFC 7766). timeout bounds each transport.
func Exchange(ctx context.Context, m *dns.Msg, srv string, timeout time.Duration) (*dns.Msg, error) {
	resp, _, err := (&dns.Client{Net: "udp", Timeout: timeout}).ExchangeContext(ctx, m, srv)
	if err != nil || !resp.Truncated {
		return resp, err
	}
	resp, _, err = (&dns.Client{Net: "tcp", Timeout: timeout}).ExchangeContext(ctx, m, srv)
	if err != nil {
		return nil, fmt.Errorf("over TCP after a truncated UDP answer: %w", err)
	}
	return resp, nil
}
