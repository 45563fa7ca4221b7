package mailrpc

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"clustermail/mailstore"
	"clustermail/peer"
)

const (
	alice = "alice@example.com"
	bob   = "bob@example.com"
)

var quiet = slog.New(slog.DiscardHandler)

// openStore opens a mailstore on a fresh in-memory filesystem.
func openStore(t *testing.T) *mailstore.Store {
	t.Helper()
	s, err := mailstore.Open("db", mailstore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// freeAddr returns a loopback address nothing listens on, for a node to
// bind (and bind again after a restart).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// node serves a handler on a real cluster port, as a node does: a
// peer.Listener with the internal RPC server on it.
type node struct {
	ln  *peer.Listener
	srv *http.Server
}

// startNode serves h under Prefix at addr; stop takes the node down,
// dropping open connections, as a crash or restart does.
func startNode(t *testing.T, addr string, h http.Handler) *node {
	t.Helper()
	ln, err := peer.Listen(addr, quiet)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(Prefix, h)
	n := &node{ln: ln, srv: peer.NewHTTPServer(mux)}
	go n.srv.Serve(ln.RPC())
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.srv.Close()
	n.ln.Close()
}

// served returns a store, a node serving it and a Client of that node.
func served(t *testing.T) (*mailstore.Store, *handler, *Client) {
	t.Helper()
	s := openStore(t)
	h := newHandler(s, quiet)
	addr := freeAddr(t)
	startNode(t, addr, h)
	c := NewClient(peer.NewHTTPClient(), addr)
	return s, h, c
}

// sentinel names the mailstore sentinel err wraps: "" for nil, "other"
// for an error that wraps none.
func sentinel(err error) string {
	if err == nil {
		return ""
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.code
		}
	}
	return "other"
}

// waitSignal fails the test unless ch delivers a signal within d.
func waitSignal(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed", what)
		}
	case <-time.After(d):
		t.Fatalf("%s: no signal within %v", what, d)
	}
}

// drain empties a pending signal.
func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

var testDate = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
