package mailauth

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/mail"
	"strings"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// maxAuthorDomains bounds the policy lookups a From field naming many
// domains can cause.
const maxAuthorDomains = 3

// authorDomains returns the distinct domains of the From field's
// addresses (RFC 7489 3.1: the Author Domain), lower case. A From that
// net/mail cannot parse still yields the domain after its last "@", so a
// sloppy or crafted field does not escape the policy.
func authorDomains(msg []byte) []string {
	var out []string
	add := func(d string) {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if d == "" || len(out) >= maxAuthorDomains {
			return
		}
		for _, have := range out {
			if have == d {
				return
			}
		}
		out = append(out, d)
	}
	for _, v := range headerValues(msg, "From") {
		list, err := mail.ParseAddressList(v)
		if err == nil {
			for _, a := range list {
				add(domainOf(a.Address))
			}
			continue
		}
		d := domainOf(v)
		if i := strings.IndexAny(d, "> \t,;()"); i >= 0 {
			d = d[:i]
		}
		add(d)
	}
	return out
}

// policyOutcome is what DNS says about a domain's DMARC policy.
type policyOutcome struct {
	rec    *dmarc.Record // nil: no policy
	policy dmarc.Policy  // p=, or sp= when found at the organizational domain
	pct    int
	result authres.ResultValue // temperror or permerror when rec is nil for that reason
	reason string
}

// lookupPolicy finds the policy of an Author Domain: its own record, else
// its organizational domain's (RFC 7489 6.6.3), whose sp= then applies.
func (c *Checker) lookupPolicy(ctx context.Context, domain string) policyOutcome {
	opts := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) { return c.cfg.Resolver.LookupTXT(ctx, name) }}
	rec, err := dmarc.LookupWithOptions(domain, opts)
	sub := false
	if errors.Is(err, dmarc.ErrNoPolicy) {
		if org := orgDomain(domain); org != domain {
			rec, err = dmarc.LookupWithOptions(org, opts)
			sub = true
		}
	}
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		return policyOutcome{result: authres.ResultNone}
	case dmarc.IsTempFail(err):
		return policyOutcome{result: authres.ResultTempError, reason: "policy lookup failed"}
	case err != nil:
		return policyOutcome{result: authres.ResultPermError, reason: "invalid policy record"}
	}
	o := policyOutcome{rec: rec, policy: rec.Policy, pct: 100}
	if sub && rec.SubdomainPolicy != "" {
		o.policy = rec.SubdomainPolicy
	}
	if rec.Percent != nil {
		o.pct = *rec.Percent
	}
	return o
}

// decision is the DMARC outcome for one Author Domain.
type decision struct {
	domain string
	result authres.ResultValue
	action Action
	reason string
}

// evaluate applies a domain's policy to the SPF and DKIM results (RFC
// 7489 6.6.2): pass when either passed for an aligned domain.
func (c *Checker) evaluate(domain string, pol policyOutcome, spfFrom spfOutcome, sigs []dkimOutcome) decision {
	d := decision{domain: domain, result: pol.result, reason: pol.reason}
	if pol.rec == nil {
		return d
	}
	if spfFrom.result == authres.ResultPass && aligned(spfFrom.domain, domain, pol.rec.SPFAlignment) {
		d.result = authres.ResultPass
		return d
	}
	temp := spfFrom.result == authres.ResultTempError && aligned(spfFrom.domain, domain, pol.rec.SPFAlignment)
	for _, s := range sigs {
		if !aligned(s.domain, domain, pol.rec.DKIMAlignment) {
			continue
		}
		if s.result == authres.ResultPass {
			d.result = authres.ResultPass
			return d
		}
		temp = temp || s.result == authres.ResultTempError
	}
	if temp {
		// It might have passed: never refuse on a DNS hiccup.
		d.result, d.reason = authres.ResultTempError, "SPF or DKIM could not be verified now"
		return d
	}
	d.result, d.reason = authres.ResultFail, "p="+string(pol.policy)
	switch pol.policy {
	case dmarc.PolicyReject:
		d.action = Reject
	case dmarc.PolicyQuarantine:
		d.action = Junk
	}
	if d.action != Deliver && !c.sample(pol.pct) {
		// Outside the sampled share a policy applies one step softer
		// (6.6.4): reject becomes quarantine, quarantine none.
		d.action--
		d.reason += " (not sampled)"
	}
	return d
}

// aligned compares an authenticated domain with the Author Domain:
// equal in strict mode, same organizational domain in relaxed mode.
func aligned(authenticated, author string, mode dmarc.AlignmentMode) bool {
	a := strings.ToLower(strings.TrimSuffix(authenticated, "."))
	if a == "" {
		return false
	}
	if a == author {
		return true
	}
	return mode != dmarc.AlignmentStrict && orgDomain(a) == orgDomain(author)
}

// orgDomain is the organizational domain (RFC 7489 3.2) by the public
// suffix list compiled into golang.org/x/net/publicsuffix; the domain
// itself when the list cannot say.
func orgDomain(d string) string {
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}

func samplePct(pct int) bool { return pct >= 100 || rand.IntN(100) < pct }
