package node

import (
	"crypto/tls"
	"errors"

	"clustermail/mailrpc"
	"clustermail/pop3d"
)

// startAccess starts the mail access listeners (POP3; IMAP), all sharing one
// login throttle and the same way to reach an account's mailboxes.
func (n *Node) startAccess() error {
	n.access = &mailAccess{self: n.cfg.Name, local: n.mail, dir: n.dir, cluster: n.cluster, n: n, clients: map[string]*mailrpc.Client{}}
	limiter := n.logins
	var tlsConf *tls.Config
	if n.certs != nil {
		tlsConf = n.certs.ServerConfig()
	}
	for _, pc := range []pop3d.Config{
		{Name: "pop3", Addr: n.cfg.POP3Addr, TLS: tlsConf, InsecureAuth: n.cfg.InsecureAuth},
		{Name: "pop3s", Addr: n.cfg.POP3SAddr, TLS: tlsConf, ImplicitTLS: true},
	} {
		if pc.Addr == "" {
			continue
		}
		pc.Hostname = n.cfg.Hostname
		pc.MaxConnectionsPerIP = n.cfg.MaxConnectionsPerIP
		s, err := pop3d.New(pc, pop3Backend{n.access}, limiter, n.log.With("part", "pop3"), n.reg)
		if err != nil {
			return err
		}
		if err := s.Listen(); err != nil {
			return err
		}
		n.readers = append(n.readers, s)
		n.goServe(pc.Name, s.Serve)
	}
	return n.startIMAP(limiter, tlsConf)
}

// pop3Backend adapts mailAccess to pop3d.
type pop3Backend struct{ a *mailAccess }

func (b pop3Backend) Authenticate(user, pass string) (string, bool) {
	return b.a.authenticate(user, pass)
}

func (b pop3Backend) Open(account string) (pop3d.Store, error) {
	s, err := b.a.open(account)
	if errors.Is(err, mailrpc.ErrUnavailable) {
		return nil, errors.Join(pop3d.ErrUnavailable, err)
	}
	return s, err
}
