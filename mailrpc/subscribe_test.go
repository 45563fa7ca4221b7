package mailrpc

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"clustermail/peer"
)

// fast shortens a client's reconnect timing for tests.
func fast(c *Client) *Client {
	c.backoffMin, c.backoffMax = 5*time.Millisecond, 50*time.Millisecond
	return c
}

func TestSubscribeSignalsChanges(t *testing.T) {
	s, _, c := served(t)
	ch, cancel := c.Subscribe(alice)
	other, cancelOther := c.Subscribe(bob)
	defer cancelOther()

	// A delivery on the owner, as its queue worker makes it.
	if _, _, err := s.Deliver(alice, "q/1", testDate, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, time.Second, "delivery on the owner")
	// A change made through a client, as an IMAP session on a third node.
	if err := c.CreateMailbox(alice, "Work", ""); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, time.Second, "mailbox created through the client")
	select {
	case <-other:
		t.Fatal("another account's subscriber was signalled")
	default:
	}

	cancel()
	cancel() // idempotent, as mailstore's
	if _, ok := <-ch; ok {
		t.Fatal("channel not closed by cancel")
	}
}

func TestSubscribeSurvivesRestart(t *testing.T) {
	s := openStore(t)
	addr := freeAddr(t)
	n := startNode(t, addr, newHandler(s, quiet))
	c := fast(NewClient(peer.NewHTTPClient(), addr))
	ch, cancel := c.Subscribe(alice)
	defer cancel()

	n.stop()
	startNode(t, addr, newHandler(s, quiet))
	// Changes may have happened while the stream was down: one signal says
	// so once the client is subscribed again.
	waitSignal(t, ch, 5*time.Second, "reconnect")
	if _, _, err := s.Deliver(alice, "q/1", testDate, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, time.Second, "delivery after the restart")
}

func TestSubscribeOwnerDownAtFirst(t *testing.T) {
	s := openStore(t)
	addr := freeAddr(t)
	c := fast(NewClient(peer.NewHTTPClient(), addr))
	ch, cancel := c.Subscribe(alice) // returns although nobody listens
	defer cancel()

	startNode(t, addr, newHandler(s, quiet))
	waitSignal(t, ch, 5*time.Second, "first connection")
	if _, _, err := s.Deliver(alice, "q/1", testDate, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, time.Second, "delivery")
}

// A stream that goes silent (an owner gone without closing the
// connection) is abandoned after the idle limit and opened again.
func TestSubscribeSilentStream(t *testing.T) {
	requests := make(chan struct{}, 16)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests <- struct{}{}
		_, _ = w.Write([]byte(lineReady + "\n"))
		w.(http.Flusher).Flush()
		select { // then nothing, not even heartbeats
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	c := fast(NewClient(srv.Client(), strings.TrimPrefix(srv.URL, "http://")))
	c.idle = 50 * time.Millisecond
	ch, cancel := c.Subscribe(alice)
	defer cancel()

	<-requests
	select {
	case <-requests:
	case <-time.After(5 * time.Second):
		t.Fatal("silent stream not replaced")
	}
	waitSignal(t, ch, 5*time.Second, "reconnect after silence")
}

// Heartbeats keep a quiet stream alive: no reconnect, no signal.
func TestSubscribeHeartbeats(t *testing.T) {
	s := openStore(t)
	h := newHandler(s, quiet)
	h.heartbeat = 2 * time.Millisecond
	const beats = 50 // together far longer than the client's idle limit
	requests := make(chan struct{}, 16)
	enough := make(chan struct{})
	var once sync.Once
	addr := freeAddr(t)
	startNode(t, addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests <- struct{}{}
		h.ServeHTTP(&beatCounter{ResponseWriter: w, left: beats, enough: enough, once: &once}, r)
	}))
	c := fast(NewClient(peer.NewHTTPClient(), addr))
	c.idle = 20 * time.Millisecond
	ch, cancel := c.Subscribe(alice)
	defer cancel()
	<-requests

	select {
	case <-enough:
	case <-time.After(10 * time.Second):
		t.Fatal("heartbeats not sent")
	}
	select {
	case <-ch:
		t.Fatal("signal without a change")
	case <-requests:
		t.Fatal("stream reopened although heartbeats flowed")
	default:
	}
}

// beatCounter closes enough once left heartbeats have been written.
type beatCounter struct {
	http.ResponseWriter
	left   int
	enough chan struct{}
	once   *sync.Once // shared: a second stream must not close enough again
}

func (b *beatCounter) Write(p []byte) (int, error) {
	if string(p) == lineBeat+"\n" {
		if b.left--; b.left == 0 {
			b.once.Do(func() { close(b.enough) })
		}
	}
	return b.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController flush through the wrapper.
func (b *beatCounter) Unwrap() http.ResponseWriter { return b.ResponseWriter }

// Closing the owner's store ends its streams even though the HTTP server
// keeps running (Server.Shutdown leaves streams alone), so clients move on
// to the restarted node.
func TestSubscribeStoreClosed(t *testing.T) {
	s, h, c := served(t)
	h.heartbeat = 5 * time.Millisecond
	fast(c)
	ch, cancel := c.Subscribe(alice)
	defer cancel()
	s.Close()
	waitSignal(t, ch, 5*time.Second, "reconnect after the store closed")
}

func TestSubscribeCancelWhileDown(t *testing.T) {
	c := fast(NewClient(peer.NewHTTPClient(), freeAddr(t)))
	ch, cancel := c.Subscribe(alice)
	cancel() // must not wait for a connection that never comes
	for range ch {
	}
}

func TestSubscribeInvalidAccount(t *testing.T) {
	_, _, c := served(t)
	ch, cancel := c.Subscribe("\xff@example.com")
	select {
	case <-ch:
		t.Fatal("signal for an account that cannot exist")
	default:
	}
	cancel()
	if _, ok := <-ch; ok {
		t.Fatal("channel not closed by cancel")
	}
}
