package node

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"clustermail/api"
	"clustermail/certs"
	"clustermail/cluster"
	"clustermail/peer"
)

// peerNetwork is how this node meets the others on the cluster port:
// mutual TLS when the cluster CA and certificate are configured, else
// plaintext with a warning.
func (n *Node) peerNetwork() (*peer.Network, error) {
	if n.cfg.ClusterCA == "" {
		n.log.Warn("cluster traffic is not encrypted: Raft, forwarded writes and message bodies cross the cluster port in clear, " +
			"and any host that reaches it is trusted; give every node --cluster-ca, --cluster-cert and --cluster-key (see clustermail tls)")
		return nil, nil
	}
	pool, err := certs.LoadPool(n.cfg.ClusterCA)
	if err != nil {
		return nil, err
	}
	if n.clusterCerts, err = certs.NewReloader(n.cfg.ClusterCert, n.cfg.ClusterKey, n.log); err != nil {
		return nil, fmt.Errorf("cluster certificate: %w", err)
	}
	nw, err := peer.MutualTLS(pool, func() (*tls.Certificate, error) { return n.clusterCerts.GetCertificate(nil) })
	if err != nil {
		return nil, err
	}
	n.log.Info("cluster port: mutual TLS", "ca", n.cfg.ClusterCA, "cert", n.cfg.ClusterCert)
	return nw, nil
}

// gossipKey is the decoded --gossip-key (checked by Validate), nil if unset.
func (n *Node) gossipKey() []byte {
	if n.cfg.GossipKey == "" {
		return nil
	}
	k, _ := cluster.DecodeGossipKey(n.cfg.GossipKey)
	return k
}

// loadToken reads the admin API token: the file's content, whitespace
// trimmed. An empty token would let anyone in, so it is an error.
func loadToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--api-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("--api-token-file %s is empty", file)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("--api-token-file %s: the token must be one word", file)
	}
	return tok, nil
}

// openPaths answer without a token: the liveness and readiness probes of
// load balancers, orchestrators and deploy/healthcheck. Metrics and pprof
// are protected, as Consul does.
var openPaths = map[string]bool{"/v1/health/live": true, "/v1/health/ready": true}

// requireToken lets a request through only with "Authorization: Bearer
// <token>", when a token is configured. Requests forwarded between nodes
// carry the client's header, so they are checked the same way.
func (n *Node) requireToken(h http.Handler) http.Handler {
	if n.token == "" {
		return h
	}
	want := sha256.Sum256([]byte(n.token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if openPaths[r.URL.Path] {
			h.ServeHTTP(w, r)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// Hashing first makes the comparison constant time whatever the
		// length of what was sent.
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="clustermail"`)
			msg := "missing bearer token: send Authorization: Bearer <token> (the CLI reads CLUSTERMAIL_TOKEN)"
			if ok {
				msg = "invalid bearer token"
			}
			writeErr(w, http.StatusUnauthorized, errors.New(msg))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// registerKeyringAPI adds the gossip keyring endpoints: every call acts on
// every live node, reached over the cluster port.
func (n *Node) registerKeyringAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/keyring", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := reqCtx(r)
		defer cancel()
		writeJSON(w, 200, keyringOut(n.cluster.KeyringAll(ctx, cluster.KeyringList, "")))
	})
	mux.HandleFunc("POST /v1/keyring", func(w http.ResponseWriter, r *http.Request) {
		var req api.KeyringRequest
		if !readJSON(w, r, &req) {
			return
		}
		switch req.Op {
		case cluster.KeyringInstall, cluster.KeyringUse, cluster.KeyringRemove:
		default:
			writeErr(w, http.StatusBadRequest, fmt.Errorf("keyring op %q: want install, use or remove", req.Op))
			return
		}
		if _, err := cluster.DecodeGossipKey(req.Key); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		ctx, cancel := reqCtx(r)
		defer cancel()
		writeJSON(w, 200, keyringOut(n.cluster.KeyringAll(ctx, req.Op, req.Key)))
	})
}

func keyringOut(in []cluster.KeyringState) []api.KeyringNode {
	out := make([]api.KeyringNode, len(in))
	for i, s := range in {
		out[i] = api.KeyringNode{Node: s.Node, Primary: s.Primary, Keys: s.Keys, Error: s.Error}
	}
	return out
}

// loopback reports whether addr (host:port) is reachable from this host only.
func loopback(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(h)
	return h == "localhost" || ip != nil && ip.IsLoopback()
}
