package smtpd

import (
	"context"
	"net"

	"github.com/emersion/go-smtp"

	"clustermail/mailauth"
)

// MailAuth checks where a message from the internet comes from (SPF,
// DKIM, DMARC). mailauth.Checker is the real one.
type MailAuth interface {
	Check(ctx context.Context, env mailauth.Envelope, msg []byte) mailauth.Verdict
	// StripForged removes the Authentication-Results fields claiming to
	// be ours: only we may write them.
	StripForged(msg []byte) []byte
}

// checkAuth runs the inbound checks on a message from an unauthenticated
// client of the inbound listener; other messages pass unchanged. It
// returns the message to queue: with our Authentication-Results field on
// top and any forged one claiming our name removed. A DMARC reject
// refuses the message; quarantine sends it to the recipients' Junk.
func (s *session) checkAuth(id string, msg []byte, rcvd int) ([]byte, error) {
	ma := s.s.cfg.MailAuth
	if ma == nil || s.account != "" || s.s.cfg.Mode != ModeInbound {
		return msg, nil
	}
	// Our Received field, msg[:rcvd], comes first; the sender signed what
	// follows.
	host, _, _ := net.SplitHostPort(s.remote)
	env := mailauth.Envelope{RemoteIP: net.ParseIP(host), Helo: s.conn.Hostname(), MailFrom: s.from}
	v := ma.Check(context.Background(), env, msg[rcvd:])
	lg := s.s.log.With("queue_id", id, "remote", s.remote, "spf", v.SPF, "dkim", v.DKIM, "dmarc", v.DMARC)
	switch v.Action {
	case mailauth.Reject:
		lg.Info("message refused", "reason", v.Reason)
		return nil, smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "Message refused by the DMARC policy of its From domain")
	case mailauth.Junk:
		lg.Info("message quarantined", "reason", v.Reason)
		for i := range s.targets {
			s.targets[i].Junk = true
		}
	default:
		lg.Debug("message authenticated", "reason", v.Reason)
	}
	rest := ma.StripForged(msg[rcvd:])
	out := make([]byte, 0, len(v.Header)+rcvd+len(rest))
	out = append(out, v.Header...)
	out = append(out, msg[:rcvd]...)
	return append(out, rest...), nil
}
