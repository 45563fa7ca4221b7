package pop3d

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// poplibScript drives the server with Python's poplib: argv is host, port
// and, for STLS, a CA file. It prints what it saw as JSON.
const poplibScript = `
import json, poplib, ssl, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=10)
out = {"welcome": p.getwelcome().decode()}
if len(sys.argv) > 3:
    out["stls"] = p.stls(ssl.create_default_context(cafile=sys.argv[3])).decode()
out["capa"] = sorted(p.capa().keys())
p.user("alice")
out["pass"] = p.pass_("secret pass").decode()
out["stat"] = list(p.stat())
out["list"] = [l.decode() for l in p.list()[1]]
out["uidl"] = [l.decode() for l in p.uidl()[1]]
_, lines, out["retr_octets"] = p.retr(1)
out["retr"] = [l.decode() for l in lines]
out["top"] = [l.decode() for l in p.top(1, 1)[1]]
out["dele"] = p.dele(2).decode()
out["quit"] = p.quit().decode()
print(json.dumps(out))
`

type poplibResult struct {
	Welcome    string   `json:"welcome"`
	STLS       string   `json:"stls"`
	Capa       []string `json:"capa"`
	Pass       string   `json:"pass"`
	Stat       []int    `json:"stat"`
	List       []string `json:"list"`
	UIDL       []string `json:"uidl"`
	Retr       []string `json:"retr"`
	RetrOctets int      `json:"retr_octets"`
	Top        []string `json:"top"`
	Dele       string   `json:"dele"`
	Quit       string   `json:"quit"`
}

// run runs a client program with a deadline, so a hung exchange fails the
// test instead of stalling it.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s: %v\n%s\n%s", name, err, out, stderr)
	}
	return string(out)
}

func TestPoplib(t *testing.T) {
	srvTLS, _, certPEM := testCert(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		args []string
	}{
		{"plain", Config{}, nil},
		{"stls", Config{TLS: srvTLS}, []string{caFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, tc.cfg)
			host, port := splitAddr(t, h)
			out := run(t, "python3", append([]string{"-c", poplibScript, host, port}, tc.args...)...)
			var got poplibResult
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("poplib output %q: %v", out, err)
			}
			if !strings.HasPrefix(got.Welcome, "+OK") || !strings.HasPrefix(got.Pass, "+OK") || !strings.HasPrefix(got.Dele, "+OK") ||
				!strings.HasPrefix(got.Quit, "+OK") || tc.args != nil && !strings.HasPrefix(got.STLS, "+OK") {
				t.Errorf("replies: %+v", got)
			}
			if !strings.Contains(strings.Join(got.Capa, " "), "UIDL") {
				t.Errorf("capa = %v", got.Capa)
			}
			total := 0
			for _, m := range testMessages {
				total += len(m)
			}
			if len(got.Stat) != 2 || got.Stat[0] != 3 || got.Stat[1] != total {
				t.Errorf("stat = %v, want [3 %d]", got.Stat, total)
			}
			if len(got.List) != 3 || len(got.UIDL) != 3 || got.UIDL[2] != h.uidl(3, h.uids[2]) {
				t.Errorf("list = %v, uidl = %v", got.List, got.UIDL)
			}
			// poplib undoes the byte-stuffing: the message comes back whole.
			if retr := strings.Join(got.Retr, "\r\n") + "\r\n"; retr != testMessages[0] || got.RetrOctets != len(testMessages[0]) {
				t.Errorf("retr = %q (%d octets), want %q", retr, got.RetrOctets, testMessages[0])
			}
			if top := strings.Join(got.Top, "\n"); top != "From: carol@example.test\nSubject: one\n\nline 1" {
				t.Errorf("top = %q", top)
			}
			if inbox := h.inbox(); len(inbox) != 2 || inbox[1] != h.uids[2] {
				t.Errorf("INBOX after poplib's DELE 2 and QUIT = %v", inbox)
			}
		})
	}
}

func TestCurl(t *testing.T) {
	srvTLS, _, certPEM := testCert(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	h := start(t, Config{TLS: srvTLS, InsecureAuth: true})
	host, port := splitAddr(t, h)
	base := "pop3://" + host + ":" + port + "/"
	curl := func(args ...string) string {
		return run(t, "curl", append([]string{"-sS", "--max-time", "20", "--user", "alice:" + alicePass}, args...)...)
	}
	// In clear text (InsecureAuth), curl logs in with AUTH PLAIN.
	if got := curl(base + "1"); got != testMessages[0] {
		t.Errorf("curl RETR 1 = %q, want %q", got, testMessages[0])
	}
	var want strings.Builder
	for i, m := range testMessages {
		want.WriteString(strings.Join([]string{itoa(i + 1), itoa(len(m))}, " ") + "\r\n")
	}
	if got := curl(base); got != want.String() {
		t.Errorf("curl LIST = %q, want %q", got, want.String())
	}
	// Over STLS, verifying the certificate.
	if got := curl("--ssl-reqd", "--cacert", caFile, base+"2"); got != testMessages[1] {
		t.Errorf("curl over STLS RETR 2 = %q", got)
	}
}

func splitAddr(t *testing.T, h *harness) (host, port string) {
	t.Helper()
	host, port, ok := strings.Cut(h.srv.Addr().String(), ":")
	if !ok {
		t.Fatalf("address %s", h.srv.Addr())
	}
	return host, port
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
