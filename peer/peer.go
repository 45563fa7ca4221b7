// Package peer is the channel between nodes: one TCP port (the cluster
// address) carrying Raft and the internal RPC, told apart by the first byte
// of each connection, as Consul does on its server port. Operators open one
// port between nodes. With mutual TLS (see Network) every connection is TLS
// 1.3 first and the kind byte travels inside it, so nothing about a
// connection, not even its kind, is told to an unauthenticated peer.
package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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
	net  *Network
	log  *slog.Logger
	subs map[byte]*subListener
	done chan struct{}
	once sync.Once

	rpcOnce sync.Once
	rpc     *http.Client
}

// Addr is the cluster address as configured (host:port, possibly a name),
// so Raft stores the name rather than an IP that may change.
type Addr string

// Network implements net.Addr.
func (a Addr) Network() string { return "tcp" }

func (a Addr) String() string { return string(a) }

// Listen binds the cluster address in plaintext and starts accepting. For
// tests: a node listens through its Network.
func Listen(addr string, log *slog.Logger) (*Listener, error) {
	return (*Network)(nil).Listen(addr, log)
}

// Listen binds the cluster address and starts accepting; with mutual TLS,
// only peers with a certificate of the cluster CA get past the handshake.
func (n *Network) Listen(addr string, log *slog.Logger) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on cluster address %s: %w", addr, err)
	}
	l := &Listener{ln: ln, addr: Addr(addr), net: n, log: log, done: make(chan struct{}), subs: map[byte]*subListener{}}
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

// Network is how this listener's node meets the others: dial through it so
// that both ends speak the same (plaintext or TLS).
func (l *Listener) Network() *Network { return l.net }

// HTTPClient is the node's one client for RPC to other nodes, through this
// listener's Network: one pool of connections (and of TLS sessions) per
// peer, whoever in the node makes the call.
func (l *Listener) HTTPClient() *http.Client {
	l.rpcOnce.Do(func() { l.rpc = l.net.HTTPClient() })
	return l.rpc
}

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
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	if cfg := l.net.serverConfig(); cfg != nil {
		tc := tls.Server(c, cfg)
		if err := tc.Handshake(); err != nil {
			lvl := slog.LevelWarn
			if errors.Is(err, io.EOF) {
				lvl = slog.LevelDebug // a TCP check or a port scan: nothing was offered
			}
			l.log.Log(context.Background(), lvl, "cluster port: peer refused, TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
			c.Close()
			return
		}
		c = tc
	}
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
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

// Dial opens a plaintext connection of the given kind to a node's cluster
// address. For tests: a node dials through its listener's Network.
func Dial(ctx context.Context, addr string, kind byte) (net.Conn, error) {
	return (*Network)(nil).Dial(ctx, addr, kind)
}

// Dial opens a connection of the given kind to a node's cluster address;
// with mutual TLS, the handshake (this node's certificate presented, the
// other's verified against the CA) is done before it returns.
func (n *Network) Dial(ctx context.Context, addr string, kind byte) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if cfg := n.clientConfig(); cfg != nil {
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS with the cluster port %s: %w", addr, err)
		}
		c = tc
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
