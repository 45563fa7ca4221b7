package peer

import (
	"context"
	"net"
	"net/http"
	"time"
)

// ForwardedHeader marks a request already forwarded by a node, so the
// receiver serves it locally instead of forwarding again.
const ForwardedHeader = "X-Clustermail-Forwarded"

// dialTimeout bounds connecting to another node's cluster port.
const dialTimeout = 3 * time.Second

// NewHTTPClient returns an HTTP client whose plaintext connections go to
// the cluster port of the node named in the URL's host (http://host:port/...).
// For tests: a node's calls go through its listener's Network.
func NewHTTPClient() *http.Client { return (*Network)(nil).HTTPClient() }

// HTTPClient returns an HTTP client whose connections go to the cluster
// port of the node named in the URL's host (http://host:port/...), through
// this Network: the URL stays http, the TLS is underneath.
func (n *Network) HTTPClient() *http.Client {
	tr := &http.Transport{
		// A node cut off the network does not refuse connections, it just
		// never answers: give up on a dial quickly so the caller can try
		// another holder, or answer 451, in seconds rather than minutes.
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, dialTimeout)
			defer cancel()
			return n.Dial(ctx, addr, KindRPC)
		},
		// Bodies go to holders in one write, not in 4 KiB pieces.
		WriteBufferSize:     64 << 10,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	return &http.Client{Transport: tr}
}

// NewHTTPServer returns the server for the internal RPC listener.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
}
