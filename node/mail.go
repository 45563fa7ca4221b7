package node

import (
	"crypto/tls"
	"log/slog"
	"strings"

	"clustermail/directory"
	"clustermail/outbound"
	"clustermail/signing"
	"clustermail/smtpd"
)

// startSMTP starts the inbound listener and the submission listeners.
func (n *Node) startSMTP() error {
	cfg := n.cfg
	var tlsConf *tls.Config
	if n.certs != nil {
		tlsConf = n.certs.ServerConfig()
	}
	m := smtpd.NewMetrics(n.reg)
	base := smtpd.Config{Hostname: cfg.Hostname, TLS: tlsConf, MaxMessageBytes: cfg.MaxMessageBytes,
		MaxRecipients: cfg.MaxRecipients, MaxLineLength: cfg.MaxLineLength, Timeout: cfg.SMTPTimeout,
		MaxConnections: cfg.MaxConnections, MaxConnectionsPerIP: cfg.MaxConnectionsPerIP,
		SendRate: n.sendRate, Logins: n.logins}
	// Signing keys come from this node's replica; only authenticated
	// submissions are signed (smtpd decides), inbound mail never is.
	base.Signer = signing.New(n.dir, n.reg)
	listeners := []smtpd.Config{}
	in := base
	in.Name, in.Mode, in.Addr = "smtp", smtpd.ModeInbound, cfg.SMTPAddr
	ma, err := newMailAuth(cfg, n.reg)
	if err != nil {
		return err
	}
	in.MailAuth = ma
	listeners = append(listeners, in)
	if cfg.SubmissionAddr != "" {
		sub := base
		sub.Name, sub.Mode, sub.Addr, sub.InsecureAuth = "submission", smtpd.ModeSubmission, cfg.SubmissionAddr, cfg.InsecureAuth
		listeners = append(listeners, sub)
	}
	if cfg.SubmissionsAddr != "" {
		sub := base
		sub.Name, sub.Mode, sub.Addr, sub.ImplicitTLS = "submissions", smtpd.ModeSubmission, cfg.SubmissionsAddr, true
		listeners = append(listeners, sub)
	}
	for _, lc := range listeners {
		s, err := smtpd.New(lc, n.router, authenticator{n.dir}, n.log.With("part", "smtp"), m)
		if err != nil {
			return err
		}
		if err := s.Listen(); err != nil {
			return err
		}
		if lc.Mode == smtpd.ModeInbound {
			n.smtp = s
		} else {
			n.subs = append(n.subs, s)
		}
		n.goServe("smtp "+lc.Name, s.Serve)
	}
	return nil
}

// newSender is the outbound SMTP client, resolving through --dns.
func newSender(cfg Config, log *slog.Logger) (*outbound.Client, error) {
	res, err := outbound.NewDNSResolver(cfg.DNS)
	if err != nil {
		return nil, err
	}
	return outbound.New(outbound.Config{Hostname: cfg.Hostname, Port: cfg.OutboundPort, Resolver: res,
		Logger: log.With("part", "outbound")}), nil
}

// authenticator checks submission logins against the directory.
type authenticator struct{ dir *directory.Directory }

func (a authenticator) Authenticate(user, pass string) (string, bool) {
	acc, ok := a.dir.Authenticate(user, pass)
	return acc.Address, ok
}

// MaySend: the account itself, or an alias that delivers to it.
func (a authenticator) MaySend(account, from string) bool {
	if strings.EqualFold(directory.Normalize(from), account) {
		return true
	}
	if _, ok, _ := a.dir.Alias(from); !ok {
		return false
	}
	res, err := a.dir.Resolve(from)
	if err != nil {
		return false
	}
	for _, acc := range res.Accounts {
		if acc.Address == account {
			return true
		}
	}
	return false
}
