// Package signing signs outgoing mail with DKIM (RFC 6376, RFC 8463): keys
// per hosted domain, kept in the replicated directory, and the DNS records
// an operator publishes for them.
package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"

	"clustermail/directory"
)

// RSABits is the size of generated RSA keys: what every verifier accepts
// (RFC 8301 asks for at least 1024, recommends 2048) and still fits a TXT
// record split in strings.
const RSABits = 2048

// GenerateKey makes a private key for alg (directory.AlgRSA or
// directory.AlgEd25519), as PKCS#8 PEM.
func GenerateKey(alg string) (string, error) {
	var k any
	var err error
	switch alg {
	case directory.AlgRSA:
		k, err = rsa.GenerateKey(rand.Reader, RSABits)
	case directory.AlgEd25519:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		return "", fmt.Errorf("unknown DKIM algorithm %q: use %s or %s", alg, directory.AlgRSA, directory.AlgEd25519)
	}
	if err != nil {
		return "", fmt.Errorf("generate %s key: %w", alg, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", fmt.Errorf("encode %s key: %w", alg, err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}

// RecordName is the DNS name of a key's TXT record, without the final dot.
func RecordName(domain, selector string) string {
	return selector + "._domainkey." + domain
}

// Record is the TXT record value that publishes a key's public half:
// SubjectPublicKeyInfo for RSA (what every verifier reads), the raw 32
// bytes for Ed25519 (RFC 8463 3.1).
func Record(k DKIMKey) (string, error) {
	s, err := directory.ParseDKIMKey(k.PrivateKey)
	if err != nil {
		return "", err
	}
	var p []byte
	switch pub := s.Public().(type) {
	case *rsa.PublicKey:
		if p, err = x509.MarshalPKIXPublicKey(pub); err != nil {
			return "", fmt.Errorf("encode RSA public key: %w", err)
		}
	case ed25519.PublicKey:
		p = pub
	}
	return fmt.Sprintf("v=DKIM1; k=%s; p=%s", k.Algorithm, base64.StdEncoding.EncodeToString(p)), nil
}

// DKIMKey is the directory's key record.
type DKIMKey = directory.DKIMKey

// ZoneLine renders a TXT record in zone-file form. A DNS character-string
// holds at most 255 octets, so a long value (an RSA key) is split into
// several quoted strings, which resolvers join back.
func ZoneLine(name, value string) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteString(". IN TXT")
	for _, c := range Chunks(value, 255) {
		b.WriteString(` "`)
		b.WriteString(c)
		b.WriteString(`"`)
	}
	return b.String()
}

// Chunks splits s into pieces of at most n bytes.
func Chunks(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}
