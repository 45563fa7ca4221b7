package smtpd

import (
	"bytes"
	"net/mail"
	"strings"
)

// Signer DKIM-signs submitted mail.
type Signer interface {
	// Sign returns the header fields to put on top of msg for domain;
	// nothing when the domain has no key.
	Sign(domain string, msg []byte) ([]byte, error)
}

// sign puts DKIM signatures on a message an account submitted. A failure
// leaves the message unsigned rather than refused: a broken key must not
// stop a domain's mail, and receivers treat an unsigned message no worse
// than one whose signature they cannot check.
func (s *session) sign(msg []byte, id string) []byte {
	if s.s.cfg.Signer == nil {
		return msg
	}
	domain := signingDomain(msg, s.account, s.from)
	if domain == "" {
		return msg
	}
	sig, err := s.s.cfg.Signer.Sign(domain, msg)
	if err != nil {
		s.s.log.Error("dkim signing failed, message goes unsigned", "queue_id", id, "domain", domain, "err", err)
		return msg
	}
	if len(sig) == 0 {
		return msg
	}
	out := make([]byte, 0, len(sig)+len(msg))
	return append(append(out, sig...), msg...)
}

// signingDomain is the d= for a submission: the From: domain, which DMARC
// aligns with, when it is the account's own domain or that of the envelope
// sender the account was allowed to use; otherwise the envelope sender's
// domain, so one tenant cannot get another hosted domain's signature on a
// forged From:.
func signingDomain(msg []byte, account, from string) string {
	envelope := strings.ToLower(domainOf(from))
	if !strings.Contains(from, "@") {
		envelope = ""
	}
	var hdr []byte
	if end := bytes.Index(msg, []byte("\r\n\r\n")); end >= 0 {
		hdr = msg[:end+4]
	} else {
		hdr = append(append([]byte(nil), msg...), "\r\n\r\n"...)
	}
	m, err := mail.ReadMessage(bytes.NewReader(hdr))
	if err != nil {
		return envelope
	}
	list, err := m.Header.AddressList("From")
	if err != nil || len(list) == 0 {
		return envelope
	}
	d := strings.ToLower(domainOf(list[0].Address))
	if d == envelope || d == strings.ToLower(domainOf(account)) {
		return d
	}
	return envelope
}
