package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestCAAndNodeCert(t *testing.T) {
	dir := t.TempDir()
	caFile, caKey, err := CreateCA(dir, 365)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := CreateCA(dir, 365); err == nil {
		t.Fatal("a second CA overwrote the first")
	}
	cf, kf, err := CreateNodeCert(dir, caFile, caKey, NodeCert{Name: "n1", DNS: []string{"mail1.example.com"},
		IPs: []net.IP{net.ParseIP("10.0.0.1")}, Days: 30})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(cf) != "n1.pem" || filepath.Base(kf) != "n1-key.pem" {
		t.Fatalf("file names %s %s", cf, kf)
	}
	if st, err := os.Stat(kf); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", st.Mode(), err)
	}
	pair, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	leaf := pair.Leaf
	pool, err := LoadPool(caFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		usage x509.ExtKeyUsage
		host  string
	}{
		{"server by name", x509.ExtKeyUsageServerAuth, "n1"},
		{"server by extra name", x509.ExtKeyUsageServerAuth, "mail1.example.com"},
		{"server by localhost", x509.ExtKeyUsageServerAuth, "localhost"},
		{"server by loopback", x509.ExtKeyUsageServerAuth, "127.0.0.1"},
		{"server by extra ip", x509.ExtKeyUsageServerAuth, "10.0.0.1"},
		{"client", x509.ExtKeyUsageClientAuth, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: tc.host, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.example.com"}); err == nil {
		t.Fatal("verified for a name not in the SANs")
	}
	if leaf.NotAfter.After(time.Now().AddDate(0, 0, 31)) {
		t.Fatalf("validity %v, asked 30 days", leaf.NotAfter)
	}
	if !slices.Contains(leaf.DNSNames, "n1") || leaf.IsCA {
		t.Fatalf("leaf %v CA=%v", leaf.DNSNames, leaf.IsCA)
	}

	// A certificate from another CA does not verify against this one.
	other := t.TempDir()
	oca, okey, err := CreateCA(other, 1)
	if err != nil {
		t.Fatal(err)
	}
	ocf, okf, err := CreateNodeCert(other, oca, okey, NodeCert{Name: "rogue", Days: 1})
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := tls.LoadX509KeyPair(ocf, okf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rogue.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Fatal("a certificate of another CA verified")
	}
}

func TestNodeCertRefusals(t *testing.T) {
	dir := t.TempDir()
	caFile, caKey, err := CreateCA(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		nc   NodeCert
	}{
		{"no name", NodeCert{Days: 1}},
		{"path in name", NodeCert{Name: "../x", Days: 1}},
		{"no validity", NodeCert{Name: "n", Days: 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := CreateNodeCert(dir, caFile, caKey, tc.nc); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, _, err := CreateNodeCert(dir, caFile, caKey, NodeCert{Name: "n", Days: 1}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := CreateNodeCert(dir, caFile, caKey, NodeCert{Name: "n", Days: 1}); err == nil {
		t.Fatal("overwrote an existing node certificate")
	}
	if _, _, err := CreateNodeCert(dir, filepath.Join(dir, "n.pem"), filepath.Join(dir, "n-key.pem"), NodeCert{Name: "m", Days: 1}); err == nil {
		t.Fatal("signed with a non-CA certificate")
	}
}
