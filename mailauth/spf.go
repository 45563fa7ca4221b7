package mailauth

import (
	"context"
	"net"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	"github.com/miekg/dns"
)

// spfOutcome is the SPF result for one identity.
type spfOutcome struct {
	identity string // the address or HELO name checked; "" when not checked
	domain   string // its domain, what DMARC aligns with
	result   authres.ResultValue
	reason   string
}

// checkSPF checks the MAIL FROM identity and the HELO identity (RFC 7208
// 2.3, 2.4). With the null sender, MAIL FROM is postmaster@<HELO name>,
// which makes both checks one.
func (c *Checker) checkSPF(ctx context.Context, env Envelope) (from, helo spfOutcome) {
	heloDomain := strings.TrimSuffix(env.Helo, ".")
	if plausibleDomain(heloDomain) {
		helo = spfOutcome{identity: heloDomain, domain: heloDomain}
	}
	from = spfOutcome{identity: env.MailFrom, domain: domainOf(env.MailFrom)}
	if env.MailFrom == "" {
		from = spfOutcome{identity: "postmaster@" + heloDomain, domain: heloDomain}
	}
	run := func(o *spfOutcome) {
		switch {
		case env.RemoteIP == nil:
			o.result, o.reason = authres.ResultNone, "client address unknown"
		case !plausibleDomain(o.domain):
			// An address literal or a bare host name has no SPF record
			// to look up: no DNS traffic for it.
			o.result = authres.ResultNone
		default:
			sender := o.identity
			if !strings.Contains(sender, "@") {
				sender = "postmaster@" + o.domain
			}
			res, _ := spf.CheckHostWithSender(env.RemoteIP, heloDomain, sender,
				spf.WithResolver(c.cfg.Resolver), spf.WithContext(ctx))
			o.result = authres.ResultValue(res)
		}
	}
	done := make(chan struct{})
	if helo.identity != "" && env.MailFrom != "" {
		go func() { defer close(done); run(&helo) }()
	} else {
		close(done)
	}
	run(&from)
	<-done
	if env.MailFrom == "" && helo.identity != "" {
		helo.result = from.result
	}
	return from, helo
}

// plausibleDomain reports whether d is a DNS name worth a lookup: dotted,
// not an address literal.
func plausibleDomain(d string) bool {
	if !strings.Contains(d, ".") || strings.HasPrefix(d, "[") || net.ParseIP(d) != nil {
		return false
	}
	_, ok := dns.IsDomainName(d)
	return ok
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
	}
	return ""
}
