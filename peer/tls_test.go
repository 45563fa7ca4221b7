package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"clustermail/certs"
)

// testCA is a cluster CA in a temp dir that signs node certificates.
type testCA struct {
	t           *testing.T
	dir, ca, ck string
}

func newTestCA(t *testing.T) *testCA {
	dir := t.TempDir()
	ca, ck, err := certs.CreateCA(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{t: t, dir: dir, ca: ca, ck: ck}
}

// network returns a mutual-TLS Network for a node with a certificate of
// this CA that trusts the CA of trust.
func (c *testCA) network(name string, trust *testCA) *Network {
	c.t.Helper()
	cf, kf, err := certs.CreateNodeCert(c.dir, c.ca, c.ck, certs.NodeCert{Name: name, Days: 1})
	if err != nil {
		c.t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		c.t.Fatal(err)
	}
	pool, err := certs.LoadPool(trust.ca)
	if err != nil {
		c.t.Fatal(err)
	}
	n, err := MutualTLS(pool, func() (*tls.Certificate, error) { return &pair, nil })
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

// logBuf collects log output for assertions, safely across goroutines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func serveRPC(t *testing.T, l *Listener) {
	srv := NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "pong "+r.URL.Path)
	}))
	go srv.Serve(l.RPC())
	t.Cleanup(func() { srv.Close() })
}

func get(hc *http.Client, addr string) (string, error) {
	hc.Timeout = 5 * time.Second
	resp, err := hc.Get("http://" + addr + "/ping")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestMutualTLS(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	var logs logBuf
	l, err := ca.network("server", ca).Listen("127.0.0.1:0", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !l.Network().Secure() {
		t.Fatal("a mutual TLS listener says it is not secure")
	}
	addr := l.ln.Addr().String()
	serveRPC(t, l)
	raftConns := make(chan error, 16)
	go func() {
		for {
			c, err := l.Raft().Accept()
			if err != nil {
				return
			}
			// Echo one byte, proving the connection got through.
			var b [1]byte
			_, err = io.ReadFull(c, b[:])
			if err == nil {
				_, err = c.Write(b[:])
			}
			raftConns <- err
			c.Close()
		}
	}()

	t.Run("member connects for rpc and raft", func(t *testing.T) {
		nw := ca.network("client", ca)
		got, err := get(nw.HTTPClient(), addr)
		if err != nil || got != "pong /ping" {
			t.Fatalf("rpc: %q %v", got, err)
		}
		c, err := RaftLayer{Net: nw}.Dial("raft-addr-unused", time.Second)
		if err == nil {
			c.Close()
			t.Fatal("dialed a bad address")
		}
		c, err = RaftLayer{Net: nw}.Dial(raft.ServerAddress(addr), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte{'x'}); err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'x' {
			t.Fatalf("raft echo %q %v", b, err)
		}
		if err := <-raftConns; err != nil {
			t.Fatal(err)
		}
	})

	refused := []struct {
		name string
		nw   *Network
	}{
		{"plaintext dialer", nil},
		{"TLS without a client certificate", &Network{client: &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}}},
		{"certificate of another CA", other.network("rogue", ca)},
	}
	for _, tc := range refused {
		t.Run(tc.name+" refused", func(t *testing.T) {
			if got, err := get(tc.nw.HTTPClient(), addr); err == nil {
				t.Fatalf("rpc answered %q", got)
			}
			// Raft: the dial (or the first read) fails; the listener never
			// hands the connection over.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if c, err := tc.nw.Dial(ctx, addr, KindRaft); err == nil {
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Write([]byte("yyyyyyyy"))
				if _, err := c.Read(make([]byte, 1)); err == nil {
					t.Fatal("a refused peer's raft connection answered")
				}
				c.Close()
			}
		})
	}
	select {
	case err := <-raftConns:
		t.Fatalf("a refused peer reached the raft listener (%v)", err)
	default:
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "peer refused") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "remote=127.0.0.1:") {
		t.Fatalf("refusals not logged at warn with the remote address:\n%s", logs.String())
	}

	t.Run("client refuses a server of another CA", func(t *testing.T) {
		rl, err := other.network("rogue-server", other).Listen("127.0.0.1:0", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer rl.Close()
		serveRPC(t, rl)
		if got, err := get(ca.network("client2", ca).HTTPClient(), rl.ln.Addr().String()); err == nil {
			t.Fatalf("talked to a server of another CA: %q", got)
		}
	})
}

func TestMutualTLSNeedsCAAndCert(t *testing.T) {
	if _, err := MutualTLS(nil, nil); err == nil {
		t.Fatal("accepted no CA and no certificate")
	}
	if (*Network)(nil).Secure() || (&Network{}).Secure() {
		t.Fatal("plaintext network says it is secure")
	}
}
