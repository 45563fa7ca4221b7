package throttle

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestRefuser: a refused client reads the line, then the close; past the
// bound of concurrent refusals a connection is closed without a word.
func TestRefuser(t *testing.T) {
	r := NewRefuser(1, false, nil)
	// The first refusal stays busy: its client does not read yet.
	busyServer, busyClient := net.Pipe()
	defer busyClient.Close()
	r.Refuse(busyServer, "421 busy\r\n")
	// The second has no slot: closed at once, nothing written.
	s2, c2 := net.Pipe()
	r.Refuse(s2, "421 second\r\n")
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(c2); len(b) != 0 || err != nil {
		t.Fatalf("over the bound: read %q, %v; want a bare close", b, err)
	}
	_ = busyClient.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(busyClient); string(b) != "421 busy\r\n" || err != nil {
		t.Fatalf("refused client read %q, %v", b, err)
	}
	// The slot is free again once the first refusal ended.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s3, c3 := net.Pipe()
		r.Refuse(s3, "421 third\r\n")
		_ = c3.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c3)
		if string(b) == "421 third\r\n" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the refusal slot was never freed")
		}
	}
}
