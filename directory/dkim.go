package directory

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"clustermail/raftstore"
)

// DKIM key algorithms (the k= tag of the DNS record).
const (
	AlgRSA     = "rsa"
	AlgEd25519 = "ed25519"
)

// DKIMKey is a domain's DKIM signing key. The private key is replicated
// like the rest of the directory, so every node signs from its own replica;
// it is therefore also in snapshots and the Raft log.
type DKIMKey struct {
	Domain     string    `json:"domain"`
	Selector   string    `json:"selector"`
	Algorithm  string    `json:"algorithm"`   // AlgRSA or AlgEd25519
	PrivateKey string    `json:"private_key"` // PKCS#8, PEM
	Created    time.Time `json:"created"`
}

func dkimKey(domain, selector string) []byte {
	return append(append(key(tblDKIMKey, domain), 0), selector...)
}

// dkimRange bounds the keys of one domain: the 0 separator keeps
// "a.test" from matching "a.test.org".
func dkimRange(domain string) (lower, upper []byte) {
	lower = append(key(tblDKIMKey, domain), 0)
	return lower, append(key(tblDKIMKey, domain), 1)
}

func applyDKIMKeyAdd(tx *raftstore.Tx, p []byte) error {
	var k DKIMKey
	raftstore.Decode(p, &k)
	if !exists(tx, key(tblDomain, k.Domain)) {
		return raftstore.Errorf(raftstore.CodeNotFound, "domain %s is not hosted: add it first", k.Domain)
	}
	dk := dkimKey(k.Domain, k.Selector)
	if exists(tx, dk) {
		return raftstore.Errorf(raftstore.CodeConflict, "domain %s already has a DKIM key with selector %s", k.Domain, k.Selector)
	}
	return put(tx, dk, k)
}

func applyDKIMKeyRemove(tx *raftstore.Tx, p []byte) error {
	var k DKIMKey
	raftstore.Decode(p, &k)
	dk := dkimKey(k.Domain, k.Selector)
	if !exists(tx, dk) {
		return raftstore.Errorf(raftstore.CodeNotFound, "domain %s has no DKIM key with selector %s", k.Domain, k.Selector)
	}
	return tx.Delete(dk)
}

func countDKIMKeys(r raftstore.Reader, domain string) int {
	n := 0
	lower, upper := dkimRange(domain)
	_ = r.Iter(lower, upper, func(_, _ []byte) bool { n++; return true })
	return n
}

// AddDKIMKey stores a DKIM key for a hosted domain. The key is made by the
// caller: generating it inside the state machine would not be
// deterministic.
func (d *Directory) AddDKIMKey(ctx context.Context, k DKIMKey) (DKIMKey, error) {
	k.Domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(k.Domain), "."))
	k.Selector = strings.ToLower(strings.TrimSpace(k.Selector))
	k.Created = d.now().UTC()
	if err := ValidateDomain(k.Domain); err != nil {
		return DKIMKey{}, err
	}
	if err := ValidateSelector(k.Selector); err != nil {
		return DKIMKey{}, err
	}
	if err := checkPrivateKey(k.Algorithm, k.PrivateKey); err != nil {
		return DKIMKey{}, err
	}
	return k, d.propose(ctx, cmdDKIMKeyAdd, k)
}

// RemoveDKIMKey deletes one of a domain's DKIM keys.
func (d *Directory) RemoveDKIMKey(ctx context.Context, domain, selector string) error {
	return d.propose(ctx, cmdDKIMKeyRemove, DKIMKey{Domain: strings.ToLower(domain), Selector: strings.ToLower(selector)})
}

// DKIMKey returns one key of a domain.
func (d *Directory) DKIMKey(domain, selector string) (DKIMKey, bool, error) {
	return getJSON[DKIMKey](d.state, dkimKey(strings.ToLower(domain), strings.ToLower(selector)))
}

// DKIMKeys lists the keys of a domain, or of all domains when domain is
// empty, oldest first within a domain. The oldest key of each algorithm is
// the one that signs, so a new key only takes over once the old one is
// removed, after its DNS record had time to spread.
func (d *Directory) DKIMKeys(domain string) ([]DKIMKey, error) {
	var ks []DKIMKey
	var err error
	if domain == "" {
		ks, err = listJSON[DKIMKey](d.state, tblDKIMKey, "")
	} else {
		ks, err = listJSON[DKIMKey](d.state, tblDKIMKey, strings.ToLower(domain)+"\x00")
	}
	if err != nil {
		return nil, err
	}
	sort.SliceStable(ks, func(i, j int) bool {
		a, b := ks[i], ks[j]
		if a.Domain != b.Domain {
			return a.Domain < b.Domain
		}
		if !a.Created.Equal(b.Created) {
			return a.Created.Before(b.Created)
		}
		return a.Selector < b.Selector
	})
	return ks, nil
}

// ValidateSelector checks a DKIM selector: one or more DNS labels.
func ValidateSelector(s string) error {
	if s == "" || len(s) > 63 {
		return raftstore.Errorf(raftstore.CodeInvalid, "invalid selector %q: length must be 1-63", s)
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
			return raftstore.Errorf(raftstore.CodeInvalid, "invalid selector %q: bad label %q", s, l)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return raftstore.Errorf(raftstore.CodeInvalid, "invalid selector %q: bad character %q", s, c)
			}
		}
	}
	return nil
}

// ParseDKIMKey reads a PKCS#8 PEM private key of a supported algorithm:
// the one parser for keys entering the directory and keys signing.
func ParseDKIMKey(p string) (crypto.Signer, error) {
	b, _ := pem.Decode([]byte(p))
	if b == nil {
		return nil, errors.New("DKIM private key is not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("DKIM private key: %w", err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey: // keys under 1024 bits (RFC 8301) do not even parse since Go 1.24
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("DKIM key type %T is not supported: use rsa or ed25519", k)
}

// checkPrivateKey refuses, before it enters the log, a key that no node
// could sign with.
func checkPrivateKey(alg, p string) error {
	k, err := ParseDKIMKey(p)
	if err != nil {
		return raftstore.Errorf(raftstore.CodeInvalid, "%v", err)
	}
	have := AlgRSA
	if _, ok := k.(ed25519.PrivateKey); ok {
		have = AlgEd25519
	}
	if have != alg {
		return raftstore.Errorf(raftstore.CodeInvalid, "DKIM key is %s but algorithm is %q", have, alg)
	}
	return nil
}
