package smtpd

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clustermail/mailauth"
	"clustermail/routing"
)

// verdictByFrom is a MailAuth double: the action is chosen by the
// message's From domain; it records what it was asked.
type verdictByFrom struct {
	mu   sync.Mutex
	envs []mailauth.Envelope
	msgs []string
}

func (v *verdictByFrom) Check(_ context.Context, env mailauth.Envelope, msg []byte) mailauth.Verdict {
	v.mu.Lock()
	v.envs = append(v.envs, env)
	v.msgs = append(v.msgs, string(msg))
	v.mu.Unlock()
	out := mailauth.Verdict{Header: "Authentication-Results: mx.test;\r\n\tdmarc=pass\r\n"}
	switch {
	case strings.Contains(string(msg), "@reject.test"):
		out.Action, out.Header = mailauth.Reject, "Authentication-Results: mx.test; dmarc=fail\r\n"
	case strings.Contains(string(msg), "@quarantine.test"):
		out.Action, out.Header = mailauth.Junk, "Authentication-Results: mx.test; dmarc=fail\r\n"
	}
	return out
}

func (v *verdictByFrom) StripForged(msg []byte) []byte { return mailauth.StripForged(msg, "mx.test") }

// targetRouter accepts everything for hosted.test and keeps the targets
// and bodies it was given.
type targetRouter struct {
	mu      sync.Mutex
	targets [][]routing.Target
	bodies  []string
}

func (r *targetRouter) Resolve(rcpt string) ([]routing.Target, error) {
	if !strings.HasSuffix(rcpt, "@hosted.test") {
		return nil, routing.ErrNotHosted
	}
	return []routing.Target{{Addr: rcpt, Node: "n1"}}, nil
}
func (r *targetRouter) ResolveAny(rcpt string) ([]routing.Target, error) { return r.Resolve(rcpt) }
func (r *targetRouter) Room(int64) error                                 { return nil }
func (r *targetRouter) Accept(_ context.Context, _, _ string, ts []routing.Target, body []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.targets = append(r.targets, append([]routing.Target(nil), ts...))
	r.bodies = append(r.bodies, string(body))
	return nil
}

func startAuthServer(t *testing.T, mode Mode, ma MailAuth) (string, *targetRouter) {
	t.Helper()
	cfg := Config{Name: "smtp", Mode: mode, Addr: "127.0.0.1:0", Hostname: "mx.test", MaxMessageBytes: 1 << 20,
		MaxRecipients: 10, MaxLineLength: 1000, Timeout: 5 * time.Second, MaxConnections: 10, MailAuth: ma, InsecureAuth: true}
	r := &targetRouter{}
	srv, err := New(cfg, r, authAny{}, slog.New(slog.DiscardHandler), NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv.Addr().String(), r
}

// authAny lets anyone log in as whom they say.
type authAny struct{}

func (authAny) Authenticate(user, _ string) (string, bool) { return user, true }
func (authAny) MaySend(string, string) bool                { return true }

// send runs one transaction; the error is the reply to the end of DATA.
func send(t *testing.T, addr, from, to, msg string, login bool) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if login {
		host, _, _ := net.SplitHostPort(addr)
		if err := c.Auth(smtp.PlainAuth("", "u@hosted.test", "pw", host)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Mail(from); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(to); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	err = w.Close()
	_ = c.Quit()
	return err
}

func TestInboundMailAuth(t *testing.T) {
	ma := &verdictByFrom{}
	addr, r := startAuthServer(t, ModeInbound, ma)
	forged := "Authentication-Results: MX.TEST; dmarc=pass\r\nAuthentication-Results: other.test; spf=pass\r\n"

	// Pass: delivered with our header on top, the forged one gone, the
	// other service's kept.
	if err := send(t, addr, "a@pass.test", "bob@hosted.test", forged+"From: a@pass.test\r\nSubject: hi\r\n\r\nbody\r\n", false); err != nil {
		t.Fatalf("pass: %v", err)
	}
	// Quarantine: delivered, to Junk.
	if err := send(t, addr, "a@quarantine.test", "bob@hosted.test", "From: a@quarantine.test\r\n\r\nbody\r\n", false); err != nil {
		t.Fatalf("quarantine: %v", err)
	}
	// Reject: 550 5.7.1, not queued.
	err := send(t, addr, "a@reject.test", "bob@hosted.test", "From: a@reject.test\r\n\r\nbody\r\n", false)
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != 550 || !strings.HasPrefix(te.Msg, "5.7.1 ") {
		t.Fatalf("reject: %v, want 550 5.7.1", err)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bodies) != 2 {
		t.Fatalf("%d messages queued, want 2 (the rejected one is not)", len(r.bodies))
	}
	body := r.bodies[0]
	if !strings.HasPrefix(body, "Authentication-Results: mx.test;\r\n\tdmarc=pass\r\nReceived: from client.example") {
		t.Errorf("our header is not on top:\n%s", body)
	}
	if strings.Contains(body, "MX.TEST; dmarc=pass") || !strings.Contains(body, "Authentication-Results: other.test; spf=pass\r\n") {
		t.Errorf("forged header kept or other header dropped:\n%s", body)
	}
	if r.targets[0][0].Junk || !r.targets[1][0].Junk {
		t.Errorf("junk flags %v, %v; want false, true", r.targets[0][0].Junk, r.targets[1][0].Junk)
	}

	ma.mu.Lock()
	defer ma.mu.Unlock()
	env := ma.envs[0]
	if env.Helo != "client.example" || env.MailFrom != "a@pass.test" || !env.RemoteIP.Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("envelope %+v", env)
	}
	if strings.HasPrefix(ma.msgs[0], "Received:") || !strings.HasPrefix(ma.msgs[0], forged) {
		t.Errorf("the checker did not get the message as sent:\n%s", ma.msgs[0])
	}
}

// Authenticated submissions are not checked.
func TestSubmissionSkipsMailAuth(t *testing.T) {
	ma := &verdictByFrom{}
	addr, r := startAuthServer(t, ModeSubmission, ma)
	if err := send(t, addr, "u@hosted.test", "bob@hosted.test", "From: a@reject.test\r\n\r\nbody\r\n", true); err != nil {
		t.Fatalf("submission: %v", err)
	}
	if len(ma.envs) != 0 || len(r.bodies) != 1 || strings.Contains(r.bodies[0], "Authentication-Results") {
		t.Errorf("submission was checked: %d checks, %d queued", len(ma.envs), len(r.bodies))
	}
}
