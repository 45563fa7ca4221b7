package smtpd

import (
	"bufio"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// pipeConn returns a countingConn over one end of a pipe, and the other end.
func pipeConn(t *testing.T, idle time.Duration) (*countingConn, net.Conn, *Metrics) {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	l := &limitListener{sem: make(chan struct{}, 1), m: m, name: "smtp"}
	l.sem <- struct{}{}
	return &countingConn{Conn: a, l: l, bol: true, idle: idle}, b, m
}

func TestCountingConnFixesReplies(t *testing.T) {
	c, peer, m := pipeConn(t, 0)
	r := bufio.NewReader(peer)
	for _, tc := range []struct{ in, want string }{
		{"502 5.5.1 Missing RCPT TO command.\r\n", "503 5.5.1 No valid recipients: send RCPT TO first\r\n"},
		{"501 5.5.2 Bad command\r\n", "500 5.5.2 Syntax error, command unrecognized\r\n"},
		{"500 5.5.1 Too many errors. Quiting now\r\n", "421 4.7.0 Too many errors, closing connection\r\n"},
		{"554 5.0.0 Error: transaction failed: read tcp 10.0.0.1:25->10.0.0.2:4000: i/o timeout\r\n", "451 4.4.2 Error reading the message\r\n"},
		{"502 5.5.1 HELP command not implemented\r\n", "502 5.5.1 HELP command not implemented\r\n"},
		{"250-Hello client.test\r\n", "250-Hello client.test\r\n"},
		{"250 PIPELINING\r\n", "250 PIPELINING\r\n"},
	} {
		done := make(chan error, 1)
		go func() {
			n, err := c.Write([]byte(tc.in))
			if err == nil && n != len(tc.in) {
				err = errors.New("short write count")
			}
			if err == nil {
				err = c.flush() // the server's next Read would do this
			}
			done <- err
		}()
		got, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%q: wrote %q, want %q", tc.in, got, tc.want)
		}
	}
	// Replies are counted by the code the client got.
	for code, want := range map[string]float64{"503": 1, "502": 1, "500": 1, "421": 1, "451": 1, "250": 1} {
		var mm dto.Metric
		if err := m.replies.WithLabelValues("smtp", code).Write(&mm); err != nil {
			t.Fatal(err)
		}
		if got := mm.GetCounter().GetValue(); got != want {
			t.Errorf("replies{code=%s} = %v, want %v", code, got, want)
		}
	}
}

func TestCountingConnTimeoutIsSticky(t *testing.T) {
	c, peer, _ := pipeConn(t, 0)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	buf := make([]byte, 10)
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("first read: %v, want a timeout", err)
	}
	// Data arriving later does not undo it: go-smtp must see the timeout.
	_ = c.SetReadDeadline(time.Time{})
	go peer.Write([]byte("NOOP\r\n"))
	_, err := c.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read after a timeout: %v, want a timeout again", err)
	}
}

func TestCountingConnDataReadsExtendDeadline(t *testing.T) {
	const idle = 300 * time.Millisecond
	for _, inData := range []bool{false, true} {
		c, peer, _ := pipeConn(t, idle)
		c.inData.Store(inData)
		// As go-smtp does: one deadline when the DATA command is read.
		_ = c.SetReadDeadline(time.Now().Add(idle))
		go func() { // slow but steady: a line every idle/4, for 3 idles
			for i := 0; i < 12; i++ {
				time.Sleep(idle / 4)
				if _, err := peer.Write([]byte("line\r\n")); err != nil {
					return
				}
			}
			peer.Close()
		}()
		buf := make([]byte, 64)
		var err error
		for err == nil {
			_, err = c.Read(buf)
		}
		timedOut := errors.Is(err, os.ErrDeadlineExceeded)
		if inData && timedOut {
			t.Fatalf("in DATA, a steady sender timed out: %v", err)
		}
		if !inData && !timedOut {
			t.Fatalf("outside DATA, the deadline was extended: %v", err)
		}
	}
}

// Replies leave in one write when the server next reads, so a multi-line
// EHLO answer is one segment rather than a dozen.
func TestCountingConnFlushesBeforeRead(t *testing.T) {
	c, peer, _ := pipeConn(t, 0)
	for _, line := range []string{"250-Hello\r\n", "250-PIPELINING\r\n", "250 8BITMIME\r\n"} {
		if _, err := c.Write([]byte(line)); err != nil {
			t.Fatal(err) // a net.Pipe write would block: nothing was sent yet
		}
	}
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 256)
		n, _ := peer.Read(buf)
		got <- string(buf[:n])
		_, _ = peer.Write([]byte("QUIT\r\n"))
	}()
	buf := make([]byte, 16)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != "250-Hello\r\n250-PIPELINING\r\n250 8BITMIME\r\n" {
		t.Fatalf("peer got %q in its first read", g)
	}
}
