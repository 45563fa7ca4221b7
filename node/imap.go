package node

import (
	"crypto/tls"

	"clustermail/imapd"
	"clustermail/throttle"
)

// imapBackend adapts mailAccess to imapd.
type imapBackend struct{ a *mailAccess }

func (b imapBackend) Authenticate(user, pass string) (string, bool) {
	return b.a.authenticate(user, pass)
}
func (b imapBackend) Open(account string) (imapd.Store, error) { return b.a.open(account) }
func (b imapBackend) Quota(account string) (int64, error)      { return b.a.quota(account) }

// startIMAP starts the IMAP listeners.
func (n *Node) startIMAP(limiter *throttle.Limiter, tlsConf *tls.Config) error {
	var m *imapd.Metrics
	for _, ic := range []imapd.Config{
		{Name: "imap", Addr: n.cfg.IMAPAddr, TLS: tlsConf, InsecureAuth: n.cfg.InsecureAuth},
		{Name: "imaps", Addr: n.cfg.IMAPSAddr, TLS: tlsConf, ImplicitTLS: true},
	} {
		if ic.Addr == "" {
			continue
		}
		ic.MaxConnectionsPerIP = n.cfg.MaxConnectionsPerIP
		if m == nil {
			m = imapd.NewMetrics(n.reg)
		}
		s, err := imapd.New(ic, imapBackend{n.access}, limiter, n.log.With("part", "imap"), m)
		if err != nil {
			return err
		}
		if err := s.Listen(); err != nil {
			return err
		}
		n.readers = append(n.readers, s)
		n.goServe(ic.Name, s.Serve)
	}
	return nil
}
