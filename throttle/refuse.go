package throttle

import (
	"crypto/tls"
	"net"
	"time"
)

// Refuser answers connections over a limit with one line and closes them.
// The goroutines doing it are bounded: in a flood, extra connections are
// just closed. The zero value is not usable; see NewRefuser.
type Refuser struct {
	slots chan struct{}
	tls   *tls.Config // implicit TLS: the answer goes inside it
}

// NewRefuser answers at most n refusals at once. On a port of implicit
// TLS (TLS starts at once) the answer is sent inside TLS with config: in
// clear text it would be garbage to the client.
func NewRefuser(n int, implicitTLS bool, config *tls.Config) *Refuser {
	r := &Refuser{slots: make(chan struct{}, n)}
	if implicitTLS {
		r.tls = config
	}
	return r
}

// Refuse writes line (CRLF included) to c within five seconds and closes
// it, in the background.
func (r *Refuser) Refuse(c net.Conn, line string) {
	select {
	case r.slots <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-r.slots }()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if r.tls != nil {
			tc := tls.Server(c, r.tls)
			if err := tc.Handshake(); err != nil {
				return
			}
			c = tc
		}
		_, _ = c.Write([]byte(line))
	}()
}
