package mailauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const (
	goodIP = "192.0.2.1"    // allowed by the test domains' SPF records
	badIP  = "198.51.100.7" // allowed by none
)

// fixture is a DNS world of test domains and the keys that sign for them.
type fixture struct {
	dns    *testDNS
	edKey  ed25519.PrivateKey
	rsaKey *rsa.PrivateKey
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	d := newTestDNS(t)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dns: d, edKey: edKey, rsaKey: rsaKey}
	spf := "v=spf1 ip4:" + goodIP + " -all"
	for _, dom := range []string{"reject.test", "quarantine.test", "nonep.test", "strict.test", "sub.org.test", "pct.test", "tempdmarc.test", "mail.reject.test", "other.test"} {
		d.txt(dom, spf)
	}
	d.txt("soft.test", "v=spf1 ~all")
	d.a("none.test", goodIP) // exists, publishes nothing
	d.fail("spftemp.test")
	d.txt("_dmarc.spftemp.test", "v=DMARC1; p=reject")

	d.txt("_dmarc.reject.test", "v=DMARC1; p=reject")
	d.txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine")
	d.txt("_dmarc.nonep.test", "v=DMARC1; p=none")
	d.txt("_dmarc.strict.test", "v=DMARC1; p=reject; adkim=s; aspf=s")
	d.txt("mail.strict.test", spf)
	d.txt("_dmarc.org.test", "v=DMARC1; p=none; sp=reject")
	d.txt("_dmarc.pct.test", "v=DMARC1; p=reject; pct=0")
	d.fail("_dmarc.tempdmarc.test")

	edPub := base64.StdEncoding.EncodeToString(edKey.Public().(ed25519.PublicKey))
	der, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, dom := range []string{"reject.test", "mail.reject.test", "strict.test", "mail.strict.test", "other.test", "spftemp.test"} {
		d.txt("ed._domainkey."+dom, "v=DKIM1; k=ed25519; p="+edPub)
		d.txt("rsa._domainkey."+dom, "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(der))
	}
	d.fail("temp._domainkey.reject.test")
	return f
}

func (f *fixture) checker(t *testing.T) *Checker {
	t.Helper()
	res, err := NewDNSResolver(f.dns.addr)
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{AuthservID: "mx1.hosted.test", Resolver: res, Timeout: 3 * time.Second})
}

func message(from string) []byte {
	return []byte("From: " + from + "\r\nTo: bob@hosted.test\r\nSubject: hello\r\nMessage-ID: <1@x>\r\n\r\nHello, Bob.\r\n")
}

// signed adds a DKIM-Signature by domain with the selector's key (RSA
// for "rsa", Ed25519 otherwise).
func (f *fixture) signed(t *testing.T, msg []byte, domain, selector string) []byte {
	t.Helper()
	var signer crypto.Signer = f.edKey
	if selector == "rsa" {
		signer = f.rsaKey
	}
	var out bytes.Buffer
	opts := &dkim.SignOptions{Domain: domain, Selector: selector, Signer: signer, HeaderCanonicalization: dkim.CanonicalizationRelaxed}
	if err := dkim.Sign(&out, bytes.NewReader(msg), opts); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestCheck(t *testing.T) {
	f := newFixture(t)
	c := f.checker(t)
	tests := []struct {
		name     string
		ip       string
		helo     string
		mailFrom string
		msg      []byte
		spf      string
		dkim     string
		dmarc    string
		action   Action
		header   []string // substrings of the header field
	}{
		{name: "spf pass aligned", ip: goodIP, helo: "mail.reject.test", mailFrom: "a@reject.test", msg: message("A <a@reject.test>"),
			spf: "pass", dkim: "none", dmarc: "pass", action: Deliver,
			header: []string{"Authentication-Results: mx1.hosted.test;", "spf=pass smtp.mailfrom=a@reject.test", "spf=pass smtp.helo=mail.reject.test", "dkim=none", "dmarc=pass header.from=reject.test"}},
		{name: "spf fail, p=reject", ip: badIP, helo: "x.test", mailFrom: "a@reject.test", msg: message("a@reject.test"),
			spf: "fail", dkim: "none", dmarc: "fail", action: Reject, header: []string{"spf=fail smtp.mailfrom=a@reject.test", `dmarc=fail reason="p=reject" header.from=reject.test`}},
		{name: "spf softfail, p=quarantine", ip: badIP, mailFrom: "a@soft.test", msg: message("a@quarantine.test"),
			spf: "softfail", dkim: "none", dmarc: "fail", action: Junk},
		{name: "no spf record, p=none", ip: badIP, mailFrom: "a@none.test", msg: message("a@nonep.test"),
			spf: "none", dkim: "none", dmarc: "fail", action: Deliver},
		{name: "spf pass but not aligned", ip: goodIP, mailFrom: "bounce@other.test", msg: message("a@reject.test"),
			spf: "pass", dkim: "none", dmarc: "fail", action: Reject},
		{name: "relaxed alignment of a subdomain", ip: goodIP, mailFrom: "bounce@mail.reject.test", msg: message("a@reject.test"),
			spf: "pass", dkim: "none", dmarc: "pass", action: Deliver},
		{name: "strict alignment refuses a subdomain", ip: goodIP, mailFrom: "bounce@mail.strict.test", msg: message("a@strict.test"),
			spf: "pass", dkim: "none", dmarc: "fail", action: Reject},
		{name: "dkim pass aligned saves a spf fail", ip: badIP, mailFrom: "a@reject.test", msg: f.signed(t, message("a@reject.test"), "reject.test", "ed"),
			spf: "fail", dkim: "pass", dmarc: "pass", action: Deliver, header: []string{"dkim=pass header.d=reject.test"}},
		{name: "dkim rsa pass", ip: badIP, mailFrom: "", helo: "[192.0.2.9]", msg: f.signed(t, message("a@reject.test"), "reject.test", "rsa"),
			spf: "none", dkim: "pass", dmarc: "pass", action: Deliver},
		{name: "dkim relaxed alignment", ip: badIP, mailFrom: "a@x.invalid", msg: f.signed(t, message("a@reject.test"), "mail.reject.test", "ed"),
			dkim: "pass", dmarc: "pass", action: Deliver},
		{name: "dkim strict alignment", ip: badIP, mailFrom: "a@x.invalid", msg: f.signed(t, message("a@strict.test"), "mail.strict.test", "ed"),
			dkim: "pass", dmarc: "fail", action: Reject},
		{name: "dkim pass not aligned", ip: badIP, mailFrom: "a@reject.test", msg: f.signed(t, message("a@reject.test"), "other.test", "ed"),
			spf: "fail", dkim: "pass", dmarc: "fail", action: Reject},
		{name: "dkim body altered", ip: badIP, mailFrom: "a@reject.test", msg: bytes.Replace(f.signed(t, message("a@reject.test"), "reject.test", "ed"), []byte("Hello"), []byte("Hullo"), 1),
			spf: "fail", dkim: "fail", dmarc: "fail", action: Reject, header: []string{"dkim=fail", "header.d=reject.test"}},
		{name: "dkim key unknown", ip: badIP, mailFrom: "a@reject.test", msg: f.signed(t, message("a@reject.test"), "reject.test", "nokey"),
			spf: "fail", dkim: "permerror", dmarc: "fail", action: Reject},
		{name: "dkim key lookup servfail", ip: badIP, mailFrom: "a@soft.test", msg: f.signed(t, message("a@reject.test"), "reject.test", "temp"),
			spf: "softfail", dkim: "temperror", dmarc: "temperror", action: Deliver},
		{name: "spf servfail is temperror, never refused", ip: badIP, mailFrom: "a@spftemp.test", msg: message("a@spftemp.test"),
			spf: "temperror", dkim: "none", dmarc: "temperror", action: Deliver},
		{name: "dmarc lookup servfail", ip: badIP, mailFrom: "a@tempdmarc.test", msg: message("a@tempdmarc.test"),
			spf: "fail", dkim: "none", dmarc: "temperror", action: Deliver},
		{name: "subdomain policy sp=reject", ip: badIP, mailFrom: "a@sub.org.test", msg: message("a@sub.org.test"),
			spf: "fail", dkim: "none", dmarc: "fail", action: Reject},
		{name: "pct=0 softens reject to quarantine", ip: badIP, mailFrom: "a@pct.test", msg: message("a@pct.test"),
			spf: "fail", dkim: "none", dmarc: "fail", action: Junk},
		{name: "several author domains: the strictest wins", ip: badIP, mailFrom: "a@none.test", msg: message("a@nonep.test, b@reject.test"),
			spf: "none", dkim: "none", dmarc: "fail", action: Reject, header: []string{"header.from=nonep.test", "header.from=reject.test"}},
		{name: "unparsable From still has its domain", ip: badIP, mailFrom: "a@none.test", msg: message("\"broken <a@reject.test>"),
			spf: "none", dkim: "none", dmarc: "fail", action: Reject},
		{name: "no From", ip: badIP, mailFrom: "a@none.test", msg: []byte("Subject: x\r\n\r\nbody\r\n"),
			spf: "none", dkim: "none", dmarc: "none", action: Deliver},
		{name: "null sender uses the HELO name", ip: goodIP, helo: "reject.test", mailFrom: "", msg: message("a@reject.test"),
			spf: "pass", dkim: "none", dmarc: "pass", action: Deliver, header: []string{"smtp.mailfrom=postmaster@reject.test", "smtp.helo=reject.test"}},
		{name: "unknown domains: none everywhere", ip: badIP, helo: "localhost", mailFrom: "a@nowhere.test", msg: message("a@nowhere.test"),
			spf: "none", dkim: "none", dmarc: "none", action: Deliver},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			helo := tc.helo
			if helo == "" {
				helo = "client.example.test"
			}
			v := c.Check(context.Background(), Envelope{RemoteIP: net.ParseIP(tc.ip), Helo: helo, MailFrom: tc.mailFrom}, tc.msg)
			if tc.spf != "" && v.SPF != tc.spf {
				t.Errorf("spf = %s, want %s", v.SPF, tc.spf)
			}
			if v.DKIM != tc.dkim || v.DMARC != tc.dmarc || v.Action != tc.action {
				t.Errorf("dkim, dmarc, action = %s, %s, %s; want %s, %s, %s (reason %q)", v.DKIM, v.DMARC, v.Action, tc.dkim, tc.dmarc, tc.action, v.Reason)
			}
			for _, s := range tc.header {
				if !strings.Contains(unfold(v.Header), s) {
					t.Errorf("header lacks %q:\n%s", s, v.Header)
				}
			}
			checkHeaderSyntax(t, v.Header, "mx1.hosted.test")
		})
	}
}

// unfold joins a folded field into one line.
func unfold(h string) string { return strings.ReplaceAll(h, "\r\n\t", " ") }

// checkHeaderSyntax parses the field back with authres.
func checkHeaderSyntax(t *testing.T, h, id string) {
	t.Helper()
	if !strings.HasPrefix(h, "Authentication-Results: ") || !strings.HasSuffix(h, "\r\n") || strings.Count(h, "\r\n") != strings.Count(h, "\r\n\t")+1 {
		t.Fatalf("malformed field %q", h)
	}
	got, _, err := authres.Parse(strings.TrimSuffix(unfold(strings.TrimPrefix(h, "Authentication-Results: ")), "\r\n"))
	if err != nil || got != id {
		t.Fatalf("authres.Parse(%q) = %q, %v", h, got, err)
	}
}

func TestCheckTrustedClientIsNeverRefused(t *testing.T) {
	f := newFixture(t)
	c := f.checker(t)
	c.cfg.Trusted = DefaultTrusted
	for _, ip := range []string{"127.0.0.1", "::1", "::ffff:127.0.0.2"} {
		v := c.Check(context.Background(), Envelope{RemoteIP: net.ParseIP(ip), Helo: "localhost", MailFrom: "a@reject.test"}, message("a@reject.test"))
		if v.Action != Deliver || v.DMARC != "fail" || !strings.Contains(v.Reason, "trusted") {
			t.Errorf("%s: action %s, dmarc %s, reason %q; want deliver, fail, trusted", ip, v.Action, v.DMARC, v.Reason)
		}
	}
	v := c.Check(context.Background(), Envelope{RemoteIP: net.ParseIP(badIP), Helo: "x.test", MailFrom: "a@reject.test"}, message("a@reject.test"))
	if v.Action != Reject {
		t.Errorf("untrusted client: action %s, want reject", v.Action)
	}
	c.cfg.Trusted = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	if v := c.Check(context.Background(), Envelope{RemoteIP: net.ParseIP(badIP), MailFrom: "a@reject.test"}, message("a@reject.test")); v.Action != Deliver {
		t.Errorf("client in a trusted network: action %s, want deliver", v.Action)
	}
}

// A DNS server that never answers costs the message the budget, no more,
// and refuses nothing.
func TestCheckDNSDownIsTemperrorWithinBudget(t *testing.T) {
	res, err := NewDNSResolver(silentDNS(t))
	if err != nil {
		t.Fatal(err)
	}
	c := New(Config{AuthservID: "mx1.hosted.test", Resolver: res, Timeout: 400 * time.Millisecond})
	start := time.Now()
	v := c.Check(context.Background(), Envelope{RemoteIP: net.ParseIP(badIP), Helo: "client.test", MailFrom: "a@reject.test"}, message("a@reject.test"))
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("took %v with a budget of 400ms", el)
	}
	if v.SPF != "temperror" || v.DMARC != "temperror" || v.Action != Deliver {
		t.Errorf("spf %s, dmarc %s, action %s; want temperror, temperror, deliver", v.SPF, v.DMARC, v.Action)
	}
}

func TestResolverNotFoundAndEmpty(t *testing.T) {
	f := newFixture(t)
	res, _ := NewDNSResolver(f.dns.addr)
	ctx := context.Background()
	if _, err := res.LookupTXT(ctx, "nowhere.test"); !isNotFound(err) {
		t.Errorf("NXDOMAIN: %v, want a not-found *net.DNSError", err)
	}
	if txt, err := res.LookupTXT(ctx, "none.test"); err != nil || len(txt) != 0 {
		t.Errorf("no TXT: %q, %v; want nothing, no error", txt, err)
	}
	if _, err := res.LookupTXT(ctx, "spftemp.test"); !isTemporary(err) {
		t.Errorf("SERVFAIL: %v, want a temporary *net.DNSError", err)
	}
	txt, err := res.LookupTXT(ctx, "rsa._domainkey.reject.test")
	if err != nil || len(txt) != 1 || len(txt[0]) < 300 {
		t.Errorf("long TXT: %d records, %v; want one of its strings joined", len(txt), err)
	}
	ips, err := res.LookupIPAddr(ctx, "none.test")
	if err != nil || len(ips) != 1 || ips[0].IP.String() != goodIP {
		t.Errorf("A: %v, %v", ips, err)
	}
}

func isNotFound(err error) bool { de, ok := err.(*net.DNSError); return ok && de.IsNotFound }
func isTemporary(err error) bool {
	de, ok := err.(*net.DNSError)
	return ok && de.Temporary()
}

// A DNS server that stopped answering is noticed: after the first
// message pays its budget, the next ones do not wait.
func TestResolverGivesUpOnSilentServer(t *testing.T) {
	res, err := NewDNSResolver(silentDNS(t))
	if err != nil {
		t.Fatal(err)
	}
	res.perTry = 100 * time.Millisecond
	c := New(Config{AuthservID: "mx1.hosted.test", Resolver: res, Timeout: 300 * time.Millisecond})
	env := Envelope{RemoteIP: net.ParseIP(badIP), Helo: "client.test", MailFrom: "a@reject.test"}
	c.Check(context.Background(), env, message("a@reject.test"))
	waitFor(t, res.down)
	start := time.Now()
	v := c.Check(context.Background(), env, message("a@reject.test"))
	if el := time.Since(start); el > 50*time.Millisecond || v.SPF != "temperror" || v.Action != Deliver {
		t.Errorf("with the server down: %v, spf %s, action %s; want at once, temperror, deliver", el, v.SPF, v.Action)
	}
}

// Timeouts for a sender's dead domain do not make a working server look
// down: that would let the sender turn the checks off for everyone.
func TestResolverTimeoutsOfOneDomainKeepServerUp(t *testing.T) {
	f := newFixture(t)
	f.dns.drop("dead.test")
	f.dns.drop("_dmarc.dead.test")
	res, _ := NewDNSResolver(f.dns.addr)
	res.perTry = 50 * time.Millisecond
	for range downAfter + 1 {
		if _, err := res.LookupTXT(context.Background(), "dead.test"); !isTemporary(err) {
			t.Fatalf("dropped query: %v, want a temporary error", err)
		}
	}
	waitFor(t, func() bool { res.mu.Lock(); defer res.mu.Unlock(); return !res.probing })
	if res.down() {
		t.Fatal("server taken for down although it answers")
	}
	if txt, err := res.LookupTXT(context.Background(), "_dmarc.reject.test"); err != nil || len(txt) != 1 {
		t.Fatalf("lookup after the probe: %q, %v", txt, err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCheckCountsResults(t *testing.T) {
	f := newFixture(t)
	res, _ := NewDNSResolver(f.dns.addr)
	reg := prometheus.NewRegistry()
	c := New(Config{AuthservID: "mx1.hosted.test", Resolver: res, Registerer: reg})
	c.Check(context.Background(), Envelope{RemoteIP: net.ParseIP(badIP), Helo: "x.test", MailFrom: "a@reject.test"}, message("a@reject.test"))
	for _, l := range [][2]string{{"action", "reject"}, {"spf", "fail"}, {"dmarc", "fail"}} {
		var m dto.Metric
		if err := c.results.WithLabelValues(l[0], l[1]).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != 1 {
			t.Errorf("%s=%s counted %v times, want 1", l[0], l[1], got)
		}
	}
}
