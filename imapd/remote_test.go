package imapd

import (
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"clustermail/mailrpc"
	"clustermail/mailstore"
)

// TestRemoteOwner serves the account from another "node" through mailrpc,
// as a node that does not own the mailbox does: IDLE hears a delivery on
// the owner through the change stream, and when the owner goes down the
// session answers NO [UNAVAILABLE] without losing its view.
func TestRemoteOwner(t *testing.T) {
	owner, err := mailstore.Open("owner", mailstore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	if err := owner.EnsureAccount(testUser); err != nil {
		t.Fatal(err)
	}
	if _, _, err := owner.Deliver(testUser, "q1/a", time.Now(), []byte(plainMsg)); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mailrpc.Handler(owner, slog.New(slog.DiscardHandler))}
	go srv.Serve(ln)
	defer srv.Close()
	client := mailrpc.NewClient(&http.Client{}, ln.Addr().String())
	client.Timeout = 2 * time.Second

	h := newHarness(t, nil)
	h.backend.remote = client
	rc := h.rawLogin(t)
	if u := rc.ok("s", "SELECT INBOX"); !anyMatch(`^\* 1 EXISTS$`, u) {
		t.Fatalf("select on the owner: %q", u)
	}
	rc.send("i IDLE")
	if l, _ := rc.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	if _, _, err := owner.Deliver(testUser, "q2/a", time.Now(), []byte(multipartMsg)); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		l, _ := rc.line()
		got <- l
	}()
	if l := waitFor(t, got, "delivery on the owner"); l != "* 2 EXISTS" {
		t.Errorf("IDLE: %q", l)
	}
	rc.send("DONE")
	rc.until("i")

	srv.Close() // the owner goes down
	for _, cmd := range []string{"FETCH 1:* (FLAGS BODY.PEEK[])", "UID SEARCH ALL", "STATUS INBOX (MESSAGES)"} {
		u, tagged := rc.cmd("x", cmd)
		if !strings.HasPrefix(tagged, "x NO [UNAVAILABLE]") || anyMatch(`EXPUNGE`, u) {
			t.Errorf("%s with the owner down: %q %q", cmd, u, tagged)
		}
	}
	if u := rc.ok("n", "NOOP"); anyMatch(`EXPUNGE|EXISTS`, u) {
		t.Errorf("NOOP with the owner down: %q", u)
	}
}
