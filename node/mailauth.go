package node

import (
	"cmp"
	"fmt"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"clustermail/mailauth"
	"clustermail/smtpd"
)

// newMailAuth is the inbound listener's SPF, DKIM and DMARC checker,
// asking the same DNS servers as outbound delivery (--dns); nil when
// --mail-auth is off.
func newMailAuth(cfg Config, reg prometheus.Registerer) (smtpd.MailAuth, error) {
	if !cfg.MailAuth {
		return nil, nil
	}
	res, err := mailauth.NewDNSResolver(cfg.DNS)
	if err != nil {
		return nil, err
	}
	trusted, err := parsePrefixes(cfg.MailAuthTrusted)
	if err != nil {
		return nil, err
	}
	return mailauth.New(mailauth.Config{AuthservID: cmp.Or(cfg.MailAuthID, cfg.Hostname), Resolver: res, Timeout: cfg.MailAuthTimeout,
		Trusted: trusted, Registerer: reg}), nil
}

func (c *Config) validateMailAuth() error {
	if _, err := parsePrefixes(c.MailAuthTrusted); err != nil {
		return err
	}
	if id := cmp.Or(c.MailAuthID, c.Hostname); c.MailAuth && !validAuthservID(id) {
		return fmt.Errorf("--mail-auth-id %q (default: --hostname): want a name such as example.org, without blanks, quotes, parentheses or ';'", id)
	}
	if c.MailAuth && c.MailAuthTimeout < 0 {
		return fmt.Errorf("--mail-auth-timeout %v: must not be negative", c.MailAuthTimeout)
	}
	return nil
}

// validAuthservID: a name that goes into the header field unquoted.
func validAuthservID(id string) bool {
	return id != "" && !strings.ContainsFunc(id, func(r rune) bool {
		return r <= ' ' || r == 0x7f || strings.ContainsRune(`;()"\`, r)
	})
}

// parsePrefixes reads CIDR networks; a bare address is a network of one.
func parsePrefixes(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("--mail-auth-trusted %q: want a network such as 10.0.0.0/8: %w", s, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
