package signing

import (
	"bytes"
	"crypto"
	"fmt"
	"net/textproto"
	"strings"
	"sync"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/prometheus/client_golang/prometheus"

	"clustermail/directory"
)

// Keys is where the signer finds a domain's keys: the node's local replica
// of the directory, so signing never waits on the network.
type Keys interface {
	// DKIMKeys lists a domain's keys, oldest first.
	DKIMKeys(domain string) ([]DKIMKey, error)
}

// signedHeaders are the fields a signature covers when present (RFC 6376
// 5.4.1). From is listed twice: the second, matching no field, makes the
// signature fail if anyone adds a From later (oversigning).
var signedHeaders = []string{"From", "To", "Cc", "Subject", "Date", "Message-ID", "MIME-Version",
	"Content-Type", "Reply-To", "In-Reply-To", "References"}

// maxCached bounds the parsed-key cache; past it the cache starts over.
const maxCached = 4096

// Signer signs messages with the keys of their domain.
type Signer struct {
	keys     Keys
	signed   *prometheus.CounterVec
	failures prometheus.Counter

	mu     sync.Mutex
	parsed map[string]crypto.Signer // by PEM, so a replaced key is never stale
}

// New returns a signer that finds keys in keys. Its metrics go to reg
// unless reg is nil: failures only show in the log otherwise, since the
// message still goes out.
func New(keys Keys, reg prometheus.Registerer) *Signer {
	s := &Signer{keys: keys, parsed: map[string]crypto.Signer{},
		signed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clustermail_dkim_signatures_total",
			Help: "DKIM signatures made, by key algorithm."}, []string{"algorithm"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "clustermail_dkim_sign_failures_total",
			Help: "Messages that could not be signed (sent unsigned)."}),
	}
	if reg != nil {
		reg.MustRegister(s.signed, s.failures)
	}
	return s
}

// Sign returns the DKIM-Signature fields to put on top of msg (a whole
// message, CRLF line ends) for domain: one per algorithm the domain has a
// key for, made with the oldest key of that algorithm, so that RSA and
// Ed25519 keys sign side by side (RFC 8463 recommends both). It returns
// nothing when the domain has no key.
func (s *Signer) Sign(domain string, msg []byte) ([]byte, error) {
	domain = strings.ToLower(domain)
	keys, err := s.keys.DKIMKeys(domain)
	if err != nil {
		s.failures.Inc()
		return nil, fmt.Errorf("dkim keys of %s: %w", domain, err)
	}
	var out []byte
	used := map[string]bool{}
	hdrs := headersToSign(msg)
	for _, k := range keys {
		if used[k.Algorithm] {
			continue
		}
		used[k.Algorithm] = true
		sig, err := s.signWith(k, hdrs, msg)
		if err != nil {
			s.failures.Inc()
			return nil, fmt.Errorf("dkim sign for %s with selector %s: %w", domain, k.Selector, err)
		}
		s.signed.WithLabelValues(k.Algorithm).Inc()
		out = append(out, sig...)
	}
	return out, nil
}

func (s *Signer) signWith(k DKIMKey, hdrs []string, msg []byte) ([]byte, error) {
	key, err := s.key(k.PrivateKey)
	if err != nil {
		return nil, err
	}
	ds, err := dkim.NewSigner(&dkim.SignOptions{
		Domain:                 k.Domain,
		Selector:               k.Selector,
		Signer:                 key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             hdrs,
	})
	if err != nil {
		return nil, err
	}
	if _, err := ds.Write(msg); err != nil {
		ds.Close()
		return nil, err
	}
	if err := ds.Close(); err != nil {
		return nil, err
	}
	return []byte(ds.Signature()), nil
}

func (s *Signer) key(p string) (crypto.Signer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.parsed[p]; ok {
		return k, nil
	}
	k, err := directory.ParseDKIMKey(p)
	if err != nil {
		return nil, err
	}
	if len(s.parsed) >= maxCached {
		clear(s.parsed)
	}
	s.parsed[p] = k
	return k, nil
}

// headersToSign is signedHeaders that msg has, plus the oversigned From.
func headersToSign(msg []byte) []string {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	have := map[string]bool{}
	for _, line := range bytes.Split(msg[:end], []byte("\r\n")) {
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		if i := bytes.IndexByte(line, ':'); i > 0 {
			have[textproto.CanonicalMIMEHeaderKey(string(bytes.TrimSpace(line[:i])))] = true
		}
	}
	out := []string{"From"} // signed even when absent: DKIM requires it
	for _, h := range signedHeaders[1:] {
		if have[textproto.CanonicalMIMEHeaderKey(h)] {
			out = append(out, h)
		}
	}
	return append(out, "From")
}
