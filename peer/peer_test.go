package peer

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"
)

func TestListenerRoutesByFirstByte(t *testing.T) {
	l, err := Listen("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.ln.Addr().String()

	srv := NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "pong "+r.URL.Path)
	}))
	go srv.Serve(l.RPC())
	defer srv.Close()

	resp, err := NewHTTPClient().Get("http://" + addr + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "pong /ping" {
		t.Fatalf("rpc answer %q", b)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, KindRaft)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := l.Raft().Accept()
	if err != nil {
		t.Fatal(err)
	}
	got.Close()

	// An unknown kind is dropped; the listener keeps serving.
	bad, err := Dial(ctx, addr, 'Z')
	if err != nil {
		t.Fatal(err)
	}
	_ = bad.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bad.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection of an unknown kind was kept open")
	}
	bad.Close()
	if _, err := NewHTTPClient().Get("http://" + addr + "/again"); err != nil {
		t.Fatalf("listener hurt by a bad connection: %v", err)
	}
}

func TestListenerClose(t *testing.T) {
	l, err := Listen("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := l.Raft().Accept(); done <- err }()
	l.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Accept returned a connection after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}
