// Package peer is the channel between nodes: one TCP port (the cluster
// address) carrying Raft and the internal RPC, told apart by the first byte
// of each connection, as Consul does on its server port. Operators open one
// port between nodes; mutual TLS will wrap this one place.
package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Connection kinds: the first byte a dialer writes.
const (
	KindRaft byte = 'R'
	KindRPC  byte = 'H'
)

// handshakeTimeout bounds how long an accepted connection may take to say
// what it is, so idle sockets cannot pile up.
const handshakeTimeout = 10 * time.Second

// Listener accepts cluster connections and hands each to the listener of its kind.
type Listener struct {
	ln   net.Listener
	addr Addr
	log  *slog.Logger
	subs map[byte]*subListener
	done chan struct{}
	once sync.Once
}

// Addr is the cluster address as configured (host:port, possibly a name),
// so Raft stores the name rather than an IP that may change.
type Addr string

// Network implements net.Addr.
func (a Addr) Network() string { return "tcp" }

func (a Addr) String() string { return string(a) }

// Listen binds the cluster address and starts accepting.
func Listen(addr string, log *slog.Logger) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on cluster address %s: %w", addr, err)
	}
	l := &Listener{ln: ln, addr: Addr(addr), log: log, done: make(chan struct{}), subs: map[byte]*subListener{}}
	for _, k := range []byte{KindRaft, KindRPC} {
		l.subs[k] = &subListener{parent: l, conns: make(chan net.Conn, 16)}
	}
	go l.serve()
	return l, nil
}

// Raft returns the listener of Raft connections.
func (l *Listener) Raft() net.Listener { return l.subs[KindRaft] }

// RPC returns the listener of internal RPC (HTTP) connections.
func (l *Listener) RPC() net.Listener { return l.subs[KindRPC] }

// Close stops accepting on the cluster port.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.ln.Close()
	})
	return err
}

func (l *Listener) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			l.log.Error("cluster port accept failed", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go l.route(c)
	}
}

func (l *Listener) route(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(handshakeTimeout))
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	sub, ok := l.subs[b[0]]
	if !ok {
		l.log.Warn("cluster port: unknown connection kind", "kind", b[0], "remote", c.RemoteAddr().String())
		c.Close()
		return
	}
	select {
	case sub.conns <- c:
	case <-l.done:
		c.Close()
	}
}

type subListener struct {
	parent *Listener
	conns  chan net.Conn
}

func (s *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.parent.done:
		return nil, net.ErrClosed
	}
}

func (s *subListener) Close() error   { return s.parent.Close() }
func (s *subListener) Addr() net.Addr { return s.parent.addr }

// Dial opens a connection of the given kind to a node's cluster address.
func Dial(ctx context.Context, addr string, kind byte) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
