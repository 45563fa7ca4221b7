package node

import (
	"crypto/tls"

	"clustermail/throttle"
)

// startIMAP starts the IMAP listeners (see imapd).
func (n *Node) startIMAP(limiter *throttle.Limiter, tlsConf *tls.Config) error {
	return nil
}
