package node

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"clustermail/api"
)

func TestRequireToken(t *testing.T) {
	n := &Node{token: "s3cret", log: slog.New(slog.DiscardHandler)}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	h := n.requireToken(ok)
	for _, tc := range []struct {
		name, path, auth string
		want             int
	}{
		{"liveness open", "/v1/health/live", "", 200},
		{"readiness open", "/v1/health/ready", "", 200},
		{"api without token", "/v1/domains", "", 401},
		{"api with token", "/v1/domains", "Bearer s3cret", 200},
		{"api with wrong token", "/v1/domains", "Bearer s3cre", 401},
		{"api with longer token", "/v1/domains", "Bearer s3crett", 401},
		{"api with another scheme", "/v1/domains", "Basic s3cret", 401},
		{"metrics protected", "/metrics", "", 401},
		{"metrics with token", "/metrics", "Bearer s3cret", 200},
		{"pprof protected", "/debug/pprof/", "", 401},
		{"health prefix is not open", "/v1/health/live/../../domains", "", 401},
		{"unknown path protected", "/v1/nothing", "", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://x"+tc.path, nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d", w.Code, tc.want)
			}
			if tc.want == 401 {
				if w.Header().Get("WWW-Authenticate") == "" {
					t.Fatal("401 without WWW-Authenticate")
				}
				var eb api.ErrorBody
				if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || eb.Error == "" {
					t.Fatalf("401 body %q is not a JSON error", w.Body.String())
				}
			}
		})
	}
	// Without a token the API is open.
	open := (&Node{}).requireToken(ok)
	w := httptest.NewRecorder()
	open.ServeHTTP(w, httptest.NewRequest("GET", "http://x/v1/domains", nil))
	if w.Code != 200 {
		t.Fatalf("no token configured: %d", w.Code)
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content, want string
		ok                  bool
	}{
		{"trimmed", "  abc123\n", "abc123", true},
		{"empty", " \n", "", false},
		{"two words", "abc def\n", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := loadToken(p)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("loadToken = %q, %v", got, err)
			}
		})
	}
	if _, err := loadToken(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing token file was accepted")
	}
}

func TestClusterSecurityConfig(t *testing.T) {
	base := func() Config {
		return Config{Name: "n", DataDir: "d", GossipAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2", APIAddr: "127.0.0.1:3",
			SMTPAddr: "127.0.0.1:4", BootstrapExpect: 1, OutboundPort: 25, QueueLifetime: 2, DelayWarning: 1,
			MaxMessageBytes: 1, MaxRecipients: 1, MaxLineLength: 1000, LogFormat: "text"}
	}
	for _, tc := range []struct {
		name string
		set  func(*Config)
		ok   bool
	}{
		{"plaintext", func(*Config) {}, true},
		{"all three", func(c *Config) { c.ClusterCA, c.ClusterCert, c.ClusterKey = "a", "b", "c" }, true},
		{"ca alone", func(c *Config) { c.ClusterCA = "a" }, false},
		{"no key", func(c *Config) { c.ClusterCA, c.ClusterCert = "a", "b" }, false},
		{"gossip key 32", func(c *Config) { c.GossipKey = "PbvxghYhQMmi3dqan35IFEYV6QHdIRIj8GBkNIbDL2c=" }, true},
		{"gossip key bad", func(c *Config) { c.GossipKey = "c2hvcnQ=" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.set(&c)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}
