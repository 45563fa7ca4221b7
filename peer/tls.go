package peer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// Network is how a node meets the others on the cluster port: in plaintext
// (the nil or zero Network, for development and tests) or with mutual TLS
// against the cluster CA. Every node-to-node connection is dialed and
// accepted through one Network, so no path can skip the TLS.
type Network struct {
	server, client *tls.Config
}

// MutualTLS returns a Network where every connection is TLS 1.3, both ends
// present a certificate, and each verifies the other's against roots (the
// cluster CA). cert returns this node's certificate, so that a renewed one
// is picked up without a restart.
//
// The peer's host name is not checked, only that its certificate chains to
// the cluster CA with the right key usage, as Consul does by default: the CA
// is the cluster's own and every certificate it signs is a member, whatever
// address the node has today (containers move).
func MutualTLS(roots *x509.CertPool, cert func() (*tls.Certificate, error)) (*Network, error) {
	if roots == nil || cert == nil {
		return nil, errors.New("mutual TLS needs the cluster CA and this node's certificate")
	}
	if _, err := cert(); err != nil {
		return nil, err
	}
	server := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      roots,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert() },
	}
	client := &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert() },
		// The standard verification also checks the host name against the
		// address dialed; VerifyConnection below does the chain alone.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyChain(cs.PeerCertificates, roots, x509.ExtKeyUsageServerAuth)
		},
	}
	return &Network{server: server, client: client}, nil
}

// Secure reports whether the cluster port uses mutual TLS.
func (n *Network) Secure() bool { return n != nil && n.server != nil }

func (n *Network) serverConfig() *tls.Config {
	if n == nil {
		return nil
	}
	return n.server
}

func (n *Network) clientConfig() *tls.Config {
	if n == nil {
		return nil
	}
	return n.client
}

func verifyChain(chain []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage) error {
	if len(chain) == 0 {
		return errors.New("the peer presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return fmt.Errorf("peer certificate %q is not from the cluster CA: %w", chain[0].Subject.CommonName, err)
	}
	return nil
}
