// Package mailauth judges where a message from the internet comes from:
// SPF (RFC 7208) for the envelope sender and the HELO name, DKIM
// signatures (RFC 6376), and the From domain's DMARC policy (RFC 7489),
// reported in one Authentication-Results header field (RFC 8601).
package mailauth

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/prometheus/client_golang/prometheus"
)

// Action is what the receiving server should do with a message.
type Action int

const (
	Deliver Action = iota // into the INBOX
	Junk                  // into the Junk mailbox (DMARC p=quarantine)
	Reject                // refuse it at DATA (DMARC p=reject)
)

func (a Action) String() string {
	switch a {
	case Junk:
		return "junk"
	case Reject:
		return "reject"
	}
	return "deliver"
}

// Config sets up a Checker.
type Config struct {
	// AuthservID names us in Authentication-Results (RFC 8601 2.5): the
	// node's host name, or one name for all the nodes of the cluster.
	AuthservID string
	Resolver   Resolver
	// Timeout bounds all DNS work for one message (default 3 s): a lookup
	// still unanswered then counts as a temporary error, and a message is
	// never refused on one.
	Timeout time.Duration
	// Trusted clients get their mail checked and the results recorded,
	// but never refused or moved to Junk: local relays, tests and
	// `clustermail dev` send with any sender. The server's default is
	// DefaultTrusted; nil trusts none.
	Trusted []netip.Prefix
	// Registerer, when set, gets clustermail_mailauth_results_total.
	Registerer prometheus.Registerer
}

// DefaultTrusted is the loopback networks.
var DefaultTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// Checker runs the checks. It is safe for concurrent use.
type Checker struct {
	cfg     Config
	results *prometheus.CounterVec // nil without a Registerer
	// sample decides pct= (RFC 7489 6.6.4): true for the share of failing
	// messages the policy applies to.
	sample func(pct int) bool
}

// New returns a Checker.
func New(cfg Config) *Checker {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	c := &Checker{cfg: cfg, sample: samplePct}
	if cfg.Registerer != nil {
		c.results = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clustermail_mailauth_results_total",
			Help: "Inbound messages checked, by method (spf, dkim, dmarc, action) and result."}, []string{"method", "result"})
		cfg.Registerer.MustRegister(c.results)
	}
	return c
}

// Envelope is what the SMTP session knew before the message.
type Envelope struct {
	RemoteIP net.IP
	Helo     string
	MailFrom string // "" for the null sender
}

// Verdict is the outcome of the checks.
type Verdict struct {
	// Header is the Authentication-Results field to prepend, CRLF-ended.
	Header string
	Action Action
	// Reason says why the action is not Deliver, for the log and reply.
	Reason string
	SPF    string // the result for the envelope sender, e.g. "pass"
	DKIM   string // the best result of the signatures, "none" without any
	DMARC  string
}

// Check runs SPF, DKIM and DMARC on msg, the message as the client sent
// it (without our Received field). It never fails: what could not be
// decided is a temperror or permerror in the verdict.
func (c *Checker) Check(ctx context.Context, env Envelope, msg []byte) Verdict {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	// The lookups are independent: run them side by side so the budget
	// covers the slowest, not the sum.
	var wg sync.WaitGroup
	var spfFrom, spfHelo spfOutcome
	var sigs []dkimOutcome
	authors := authorDomains(msg)
	pols := make([]policyOutcome, len(authors))
	wg.Add(2 + len(authors))
	go func() {
		defer wg.Done()
		spfFrom, spfHelo = c.checkSPF(ctx, env)
	}()
	go func() {
		defer wg.Done()
		sigs = c.checkDKIM(ctx, msg)
	}()
	for i, d := range authors {
		go func() {
			defer wg.Done()
			pols[i] = c.lookupPolicy(ctx, d)
		}()
	}
	wg.Wait()

	v := Verdict{SPF: string(spfFrom.result), DKIM: bestDKIM(sigs), DMARC: string(authres.ResultNone)}
	var decisions []decision
	for i, d := range authors {
		dec := c.evaluate(d, pols[i], spfFrom, sigs)
		decisions = append(decisions, dec)
		if i == 0 || worse(dec.result, authres.ResultValue(v.DMARC)) {
			v.DMARC = string(dec.result)
		}
		// Several Author Domains: the strictest policy wins (RFC 7489
		// 6.6.1).
		if dec.action > v.Action {
			v.Action, v.Reason = dec.action, "DMARC policy of "+d+": "+dec.reason
		}
	}
	if v.Action != Deliver && c.trusted(env.RemoteIP) {
		v.Reason += ", not applied to a trusted client"
		v.Action = Deliver
	}

	results := []authres.Result{&authres.SPFResult{Value: spfFrom.result, Reason: clean(spfFrom.reason), From: clean(spfFrom.identity)}}
	if spfHelo.identity != "" {
		results = append(results, &authres.SPFResult{Value: spfHelo.result, Reason: clean(spfHelo.reason), Helo: clean(spfHelo.identity)})
	}
	if len(sigs) == 0 {
		results = append(results, &authres.DKIMResult{Value: authres.ResultNone})
	}
	for _, s := range sigs {
		results = append(results, &authres.DKIMResult{Value: s.result, Reason: clean(s.reason), Domain: clean(s.domain), Identifier: clean(s.identifier)})
	}
	if len(decisions) == 0 {
		results = append(results, &authres.DMARCResult{Value: authres.ResultNone, Reason: "no author domain in From"})
	}
	for _, d := range decisions {
		results = append(results, &authres.DMARCResult{Value: d.result, Reason: clean(d.reason), From: clean(d.domain)})
	}
	v.Header = formatHeader(c.cfg.AuthservID, results)
	if c.results != nil {
		c.results.WithLabelValues("spf", v.SPF).Inc()
		c.results.WithLabelValues("dkim", v.DKIM).Inc()
		c.results.WithLabelValues("dmarc", v.DMARC).Inc()
		c.results.WithLabelValues("action", v.Action.String()).Inc()
	}
	return v
}

// worse orders DMARC results for the summary: fail over temperror over
// permerror over none over pass.
func worse(a, b authres.ResultValue) bool {
	rank := map[authres.ResultValue]int{authres.ResultPass: 0, authres.ResultNone: 1, authres.ResultPermError: 2,
		authres.ResultTempError: 3, authres.ResultFail: 4}
	return rank[a] > rank[b]
}

// StripForged removes the Authentication-Results fields of msg that
// claim our authserv-id; see the function of that name.
func (c *Checker) StripForged(msg []byte) []byte { return StripForged(msg, c.cfg.AuthservID) }

func (c *Checker) trusted(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	a = a.Unmap()
	for _, p := range c.cfg.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// formatHeader folds the field after each result so no line grows long.
func formatHeader(authservID string, results []authres.Result) string {
	v := strings.ReplaceAll(authres.Format(clean(authservID), results), " ; ", "; ")
	return authResultsField + ": " + strings.ReplaceAll(v, "; ", ";\r\n\t") + "\r\n"
}

// clean keeps what a client sent (a HELO name, an address, a signature's
// domain) from breaking the header field: no control characters, no
// quote or backslash (authres quotes values but does not escape those, so
// a crafted address could end the quoted string and add a result of its
// own), and a bounded length.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
	if len(s) > 255 {
		s = s[:255]
	}
	return s
}
