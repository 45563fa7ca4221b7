package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// File names of the cluster CA, as Consul names its agent CA.
const (
	CAFile    = "clustermail-agent-ca.pem"
	CAKeyFile = "clustermail-agent-ca-key.pem"
)

// CreateCA writes a new cluster CA (ECDSA P-256, valid for days) into dir
// and returns the paths of its certificate and key. It refuses to overwrite
// an existing CA: replacing it would lock every node out of the cluster.
func CreateCA(dir string, days int) (certFile, keyFile string, err error) {
	if days <= 0 {
		return "", "", errors.New("the CA's validity must be at least one day")
	}
	certFile, keyFile = filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	if err := refuseExisting(certFile, keyFile); err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := newSerial()
	if err != nil {
		return "", "", err
	}
	skid, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "clustermail agent CA " + serial.Text(16)[:8], Organization: []string{"clustermail"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(0, 0, days),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // signs node certificates only, never another CA
		SubjectKeyId:          skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("create the CA certificate: %w", err)
	}
	if err := writePair(dir, certFile, keyFile, der, key); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// NodeCert says what to put in a node's certificate.
type NodeCert struct {
	Name string   // the node name: common name and first DNS name
	DNS  []string // extra DNS names
	IPs  []net.IP // extra IP addresses
	Days int
}

// CreateNodeCert writes NAME.pem and NAME-key.pem into dir, signed by the
// CA in caFile/caKeyFile. The certificate serves for both ends of a cluster
// connection (server and client auth), with the SANs NAME, localhost,
// 127.0.0.1 and ::1 besides the requested ones.
func CreateNodeCert(dir, caFile, caKeyFile string, nc NodeCert) (certFile, keyFile string, err error) {
	if nc.Name == "" || filepath.Base(nc.Name) != nc.Name {
		return "", "", fmt.Errorf("node name %q: want a plain name (it names the files)", nc.Name)
	}
	if nc.Days <= 0 {
		return "", "", errors.New("the certificate's validity must be at least one day")
	}
	ca, caKey, err := LoadCA(caFile, caKeyFile)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, nc.Name+".pem"), filepath.Join(dir, nc.Name+"-key.pem")
	if err := refuseExisting(certFile, keyFile); err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := newSerial()
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	notAfter := now.AddDate(0, 0, nc.Days)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter // a leaf outliving its CA would fail verification anyway
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: nc.Name, Organization: []string{"clustermail"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dedup(append([]string{nc.Name, "localhost"}, nc.DNS...)),
		IPAddresses:  dedupIPs(append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, nc.IPs...)),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", "", fmt.Errorf("sign the certificate of %s: %w", nc.Name, err)
	}
	if err := writePair(dir, certFile, keyFile, der, key); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// LoadCA reads a CA certificate and its private key.
func LoadCA(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("read the CA certificate: %w", err)
	}
	blk, _ := pem.Decode(cb)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%s: no PEM certificate", certFile)
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certFile, err)
	}
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("%s is not a CA certificate", certFile)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("read the CA key: %w", err)
	}
	blk, _ = pem.Decode(kb)
	if blk == nil {
		return nil, nil, fmt.Errorf("%s: no PEM key", keyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		if ek, err2 := x509.ParseECPrivateKey(blk.Bytes); err2 == nil {
			k = ek
		} else {
			return nil, nil, fmt.Errorf("%s: %w", keyFile, err)
		}
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s: unsupported key type %T", keyFile, k)
	}
	return ca, signer, nil
}

// LoadPool reads the PEM certificates in file into a pool, for verifying
// the other end of a cluster connection.
func LoadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read the cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

func refuseExisting(files ...string) error {
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			return fmt.Errorf("%s already exists; move it away first", f)
		}
	}
	return nil
}

func writePair(dir, certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// O_EXCL: two concurrent runs must not silently overwrite each other.
	if err := writeNew(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	if err := writeNew(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		os.Remove(keyFile)
		return err
	}
	return nil
}

func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func subjectKeyID(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return sum[:20], nil
}

func dedup(s []string) []string {
	var out []string
	for _, v := range s {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func dedupIPs(ips []net.IP) []net.IP {
	var out []net.IP
	for _, ip := range ips {
		if ip != nil && !slices.ContainsFunc(out, ip.Equal) {
			out = append(out, ip)
		}
	}
	return out
}
