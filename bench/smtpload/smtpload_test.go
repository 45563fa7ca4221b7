package smtpload

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeServer answers SMTP well enough for the generator: every refuse-th
// message gets 451 after the final ".", the others 250.
type fakeServer struct {
	ln       net.Listener
	refuse   int64
	messages atomic.Int64
	mu       sync.Mutex
	sizes    []int
	conns    atomic.Int64
}

func newFakeServer(t *testing.T, refuse int64) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{ln: ln, refuse: refuse}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			go s.serve(c)
		}
	}()
	return s
}

func (s *fakeServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	w := func(line string) { _, _ = c.Write([]byte(line + "\r\n")) }
	w("220 fake ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
		case strings.HasPrefix(cmd, "EHLO"):
			w("250-fake")
			w("250 PIPELINING")
		case strings.HasPrefix(cmd, "DATA"):
			w("354 go ahead")
			var body bytes.Buffer
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				body.WriteString(l)
			}
			s.mu.Lock()
			s.sizes = append(s.sizes, body.Len())
			s.mu.Unlock()
			if n := s.messages.Add(1); s.refuse > 0 && n%s.refuse == 0 {
				w("451 4.3.0 try again")
			} else {
				w("250 2.0.0 queued")
			}
		case strings.HasPrefix(cmd, "QUIT"):
			w("221 bye")
			return
		default:
			w("250 ok")
		}
	}
}

func TestRunCountsAcceptedAndRefused(t *testing.T) {
	s := newFakeServer(t, 5)
	res, err := Run(context.Background(), Config{Targets: []string{s.ln.Addr().String()}, Sessions: 3, Messages: 20,
		Size: 2000, From: "a@client.test", Rcpts: []string{"u@bench.test", "v@bench.test"}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 16 || res.Failed != 4 || res.Errors["DATA-END 451"] != 4 {
		t.Fatalf("accepted %d failed %d errors %v, want 16, 4, DATA-END 451: 4", res.Accepted, res.Failed, res.Errors)
	}
	if res.Connections < 20 || s.conns.Load() < 20 {
		t.Fatalf("%d connections (server saw %d), want one per message", res.Connections, s.conns.Load())
	}
	if res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 || res.AcceptMPS <= 0 {
		t.Fatalf("latency %+v, rate %v", res.Latency, res.AcceptMPS)
	}
	for _, n := range s.sizes {
		if n != 2000 {
			t.Fatalf("message of %d bytes, want 2000", n)
		}
	}
}

func TestRunReuse(t *testing.T) {
	s := newFakeServer(t, 0)
	res, err := Run(context.Background(), Config{Targets: []string{s.ln.Addr().String()}, Sessions: 2, Messages: 30,
		Size: 500, From: "a@client.test", Rcpts: []string{"u@bench.test"}, Reuse: true, PerConn: 10, OneWrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 30 || res.Connections > 4 {
		t.Fatalf("accepted %d over %d connections, want 30 over at most 4", res.Accepted, res.Connections)
	}
}

func TestRunConnectFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	res, err := Run(context.Background(), Config{Targets: []string{addr}, Sessions: 2, Messages: 4, Size: 300,
		From: "a@client.test", Rcpts: []string{"u@bench.test"}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 0 || res.Failed != 4 || res.Errors["connect refused"] != 4 {
		t.Fatalf("accepted %d failed %d errors %v", res.Accepted, res.Failed, res.Errors)
	}
}

func TestMessageShape(t *testing.T) {
	for _, size := range []int{200, 1024, 32768, 1000} {
		m := message(nil, "a@client.test", "u@bench.test", 7, size)
		if len(m) != size {
			t.Errorf("size %d: got %d bytes", size, len(m))
		}
		for _, l := range strings.Split(string(m), "\r\n") {
			if strings.HasPrefix(l, ".") || strings.ContainsAny(l, "\r\n") {
				t.Errorf("size %d: bad line %q", size, l)
			}
		}
		if !bytes.HasSuffix(m, []byte("\r\n")) {
			t.Errorf("size %d: does not end with CRLF", size)
		}
	}
}

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	p := percentiles(d)
	if p.P50 != 50 || p.P90 != 90 || p.P99 != 99 || p.Max != 100 {
		t.Fatalf("%+v", p)
	}
}

// TestRunRate: a paced run cannot finish before its last message is due.
func TestRunRate(t *testing.T) {
	s := newFakeServer(t, 0)
	res, err := Run(context.Background(), Config{Targets: []string{s.ln.Addr().String()}, Sessions: 4, Messages: 21,
		Size: 300, From: "a@client.test", Rcpts: []string{"u@bench.test"}, Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 21 || res.AcceptS < 0.2 {
		t.Fatalf("accepted %d in %.3f s, want 21 in at least 0.2 s (the 21st is due at 0.2 s)", res.Accepted, res.AcceptS)
	}
}
