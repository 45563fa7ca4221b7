package smtpd

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"clustermail/routing"
)

func TestSigningDomain(t *testing.T) {
	for _, tc := range []struct {
		name, msg, account, from, want string
	}{
		{"from header of the account's domain", "From: Alice <alice@a.test>\r\n\r\nbody", "alice@a.test", "alice@a.test", "a.test"},
		{"from header of the envelope's domain (an alias)", "From: team@b.test\r\n\r\n", "alice@a.test", "team@b.test", "b.test"},
		{"case", "From: ALICE@A.Test\r\n\r\n", "alice@a.test", "alice@a.test", "a.test"},
		{"foreign from header falls back to the envelope", "From: ceo@c.test\r\n\r\n", "alice@a.test", "alice@a.test", "a.test"},
		{"no from header", "Subject: x\r\n\r\n", "alice@a.test", "alice@a.test", "a.test"},
		{"unparsable from header", "From: <<<\r\n\r\n", "alice@a.test", "alice@a.test", "a.test"},
		{"folded from after a trace field", "Received: from x\r\n\tby y; now\r\nFrom:\r\n Alice <alice@a.test>\r\n\r\n", "alice@a.test", "alice@a.test", "a.test"},
		{"header only", "From: alice@a.test", "alice@a.test", "alice@a.test", "a.test"},
		{"null envelope, foreign from", "From: x@c.test\r\n\r\n", "alice@a.test", "", ""},
	} {
		if got := signingDomain([]byte(tc.msg), tc.account, tc.from); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// fakeSigner signs with a marker field, or fails.
type fakeSigner struct {
	mu      sync.Mutex
	domains []string
	fail    bool
}

func (f *fakeSigner) Sign(domain string, msg []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.domains = append(f.domains, domain)
	if f.fail {
		return nil, errors.New("broken key")
	}
	if domain != "a.test" {
		return nil, nil // no key
	}
	return []byte("DKIM-Signature: v=1; d=" + domain + "; b=fake\r\n"), nil
}

// acceptRouter takes every recipient and keeps what is queued.
type acceptRouter struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (r *acceptRouter) Resolve(rcpt string) ([]routing.Target, error) {
	return []routing.Target{{Addr: rcpt, Node: "n1"}}, nil
}
func (r *acceptRouter) ResolveAny(rcpt string) ([]routing.Target, error) {
	return []routing.Target{{Addr: rcpt, Node: "n1", Remote: true}}, nil
}
func (r *acceptRouter) Room(int64) error { return nil }
func (r *acceptRouter) Accept(_ context.Context, _, _ string, _ []routing.Target, body []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, append([]byte(nil), body...))
	return nil
}

// anyAuth lets alice in and send as herself or as team@b.test.
type anyAuth struct{}

func (anyAuth) Authenticate(user, pass string) (string, bool) {
	return user, user == "alice@a.test" && pass == "pw"
}
func (anyAuth) MaySend(account, from string) bool { return from == account || from == "team@b.test" }

func startSubmission(t *testing.T, signer Signer, router Router) string {
	t.Helper()
	cfg := Config{Name: "submission", Mode: ModeSubmission, InsecureAuth: true, Addr: "127.0.0.1:0", Hostname: "mx.a.test",
		MaxMessageBytes: 1 << 20, MaxRecipients: 10, MaxLineLength: 1000, Timeout: 10 * time.Second, MaxConnections: 4,
		Signer: signer}
	s, err := New(cfg, router, anyAuth{}, slog.New(slog.DiscardHandler), NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s.Addr().String()
}

func submit(t *testing.T, addr, from, msg string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice@a.test", "pw")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail(from, []string{"bob@elsewhere.test"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.Quit()
}

func TestSubmissionIsSigned(t *testing.T) {
	for _, tc := range []struct {
		name, from, header string
		fail               bool
		wantDomain         string
		wantSigned         bool
	}{
		{"own domain", "alice@a.test", "From: alice@a.test", false, "a.test", true},
		{"domain without key", "team@b.test", "From: team@b.test", false, "b.test", false},
		{"signer failure queues unsigned", "alice@a.test", "From: alice@a.test", true, "a.test", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signer, router := &fakeSigner{fail: tc.fail}, &acceptRouter{}
			addr := startSubmission(t, signer, router)
			submit(t, addr, tc.from, tc.header+"\r\nSubject: hi\r\n\r\nhello\r\n")
			router.mu.Lock()
			defer router.mu.Unlock()
			if len(router.msgs) != 1 {
				t.Fatalf("%d messages queued", len(router.msgs))
			}
			msg := string(router.msgs[0])
			if signed := strings.HasPrefix(msg, "DKIM-Signature: v=1; d="+tc.wantDomain+"; b=fake\r\nReceived: "); signed != tc.wantSigned {
				t.Errorf("signed=%v, want %v:\n%s", signed, tc.wantSigned, msg)
			}
			if !strings.Contains(msg, "\r\nMessage-ID: ") || !strings.HasSuffix(msg, "\r\n\r\nhello\r\n") {
				t.Errorf("message not completed or body changed:\n%s", msg)
			}
			if len(signer.domains) != 1 || signer.domains[0] != tc.wantDomain {
				t.Errorf("signer asked for %v, want [%s]", signer.domains, tc.wantDomain)
			}
		})
	}
}
