package signing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"clustermail/directory"
)

// memKeys is a directory stand-in.
type memKeys map[string][]DKIMKey

func (m memKeys) DKIMKeys(domain string) ([]DKIMKey, error) { return m[domain], nil }

// testKeys caches generated keys: RSA generation is slow.
var testKeys = map[string]DKIMKey{}

func newKey(t *testing.T, domain, selector, alg string) DKIMKey {
	t.Helper()
	id := domain + "/" + selector + "/" + alg
	if k, ok := testKeys[id]; ok {
		return k
	}
	p, err := GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	k := DKIMKey{Domain: domain, Selector: selector, Algorithm: alg, PrivateKey: p, Created: time.Now()}
	testKeys[id] = k
	return k
}

// dns serves the records the generate path prints for keys.
func dns(t *testing.T, keys ...DKIMKey) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, k := range keys {
		rec, err := Record(k)
		if err != nil {
			t.Fatal(err)
		}
		out[RecordName(k.Domain, k.Selector)] = rec
	}
	return out
}

func lookup(recs map[string]string) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		if r, ok := recs[strings.TrimSuffix(name, ".")]; ok {
			// What a resolver hands back for the chunked zone line:
			// the strings joined.
			return []string{strings.Join(Chunks(r, 255), "")}, nil
		}
		return nil, errors.New("no such record")
	}
}

const testMsg = "Received: from x ([127.0.0.1])\r\n\tby mx.example.test; Sun, 29 Nov 2026 08:00:00 +0000\r\n" +
	"From: Alice <alice@example.test>\r\nTo: bob@elsewhere.test\r\nSubject: hello\r\n" +
	"Date: Sun, 29 Nov 2026 08:00:00 +0000\r\nMessage-ID: <1@example.test>\r\n\r\n" +
	"Hello Bob,\r\n\r\n  spaces   and tabs\t\r\nend\r\n"

func TestSignVerifies(t *testing.T) {
	rsaKey := newKey(t, "example.test", "rsa1", directory.AlgRSA)
	edKey := newKey(t, "example.test", "ed1", directory.AlgEd25519)
	tests := []struct {
		name string
		keys []DKIMKey
		want []string // algorithms of the signatures, in order
	}{
		{"rsa", []DKIMKey{rsaKey}, []string{"rsa-sha256"}},
		{"ed25519", []DKIMKey{edKey}, []string{"ed25519-sha256"}},
		{"both", []DKIMKey{rsaKey, edKey}, []string{"rsa-sha256", "ed25519-sha256"}},
		{"none", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(memKeys{"example.test": tc.keys}, nil)
			sig, err := s.Sign("Example.TEST", []byte(testMsg))
			if err != nil {
				t.Fatal(err)
			}
			signed := append(sig, testMsg...)
			vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{LookupTXT: lookup(dns(t, tc.keys...))})
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) != len(tc.want) {
				t.Fatalf("%d signatures, want %d:\n%s", len(vs), len(tc.want), sig)
			}
			for i, v := range vs {
				if v.Err != nil {
					t.Errorf("signature %d: %v", i, v.Err)
				}
				if v.Domain != "example.test" {
					t.Errorf("signature %d: d=%s", i, v.Domain)
				}
				if !strings.Contains(string(sig), "a="+tc.want[i]) {
					t.Errorf("signatures lack a=%s:\n%s", tc.want[i], sig)
				}
			}
			if len(vs) > 0 {
				h := vs[0].HeaderKeys
				if strings.Join(h, ":") != "From:To:Subject:Date:Message-ID:From" {
					t.Errorf("h=%v", h)
				}
			}
		})
	}
}

func TestSignatureBreaksOnTampering(t *testing.T) {
	k := newKey(t, "example.test", "ed1", directory.AlgEd25519)
	sig, err := New(memKeys{"example.test": {k}}, nil).Sign("example.test", []byte(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	for name, msg := range map[string]string{
		"body":        strings.Replace(testMsg, "Hello Bob", "Hello Eve", 1),
		"subject":     strings.Replace(testMsg, "Subject: hello", "Subject: pay now", 1),
		"second from": strings.Replace(testMsg, "To:", "From: ceo@example.test\r\nTo:", 1),
	} {
		vs, err := dkim.VerifyWithOptions(strings.NewReader(string(sig)+msg), &dkim.VerifyOptions{LookupTXT: lookup(dns(t, k))})
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 1 || vs[0].Err == nil {
			t.Errorf("%s changed, signature still verifies", name)
		}
	}
	// Relaxed canonicalization: whitespace changes in transit are fine.
	relaxed := strings.Replace(testMsg, "Subject: hello", "Subject:   hello", 1)
	vs, _ := dkim.VerifyWithOptions(strings.NewReader(string(sig)+relaxed), &dkim.VerifyOptions{LookupTXT: lookup(dns(t, k))})
	if len(vs) != 1 || vs[0].Err != nil {
		t.Errorf("relaxed canonicalization: %+v", vs)
	}
}

func TestOldestKeyOfEachAlgorithmSigns(t *testing.T) {
	old := newKey(t, "example.test", "old", directory.AlgEd25519)
	fresh := newKey(t, "example.test", "new", directory.AlgEd25519)
	sig, err := New(memKeys{"example.test": {old, fresh}}, nil).Sign("example.test", []byte(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(sig), "DKIM-Signature:"); n != 1 || !strings.Contains(string(sig), "s=old") {
		t.Errorf("%d signatures, want one by the old key:\n%s", n, sig)
	}
}

func TestBadKeyIsAnError(t *testing.T) {
	k := DKIMKey{Domain: "example.test", Selector: "x", Algorithm: directory.AlgRSA, PrivateKey: "garbage"}
	good := newKey(t, "example.test", "ed1", directory.AlgEd25519)
	s := New(memKeys{"example.test": {good}, "other.test": {k}}, prometheus.NewRegistry())
	if _, err := s.Sign("example.test", []byte(testMsg)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign("other.test", []byte(testMsg)); err == nil {
		t.Fatal("signing with a broken key succeeded")
	}
	if n := counterValue(s.failures); n != 1 {
		t.Errorf("%v failures counted, want 1", n)
	}
	if n := counterValue(s.signed.WithLabelValues(directory.AlgEd25519)); n != 1 {
		t.Errorf("%v ed25519 signatures counted, want 1", n)
	}
}

func TestZoneLine(t *testing.T) {
	k := newKey(t, "example.test", "rsa1", directory.AlgRSA)
	rec, err := Record(k)
	if err != nil {
		t.Fatal(err)
	}
	line := ZoneLine(RecordName(k.Domain, k.Selector), rec)
	if !strings.HasPrefix(line, `rsa1._domainkey.example.test. IN TXT "v=DKIM1; k=rsa; p=`) {
		t.Fatalf("zone line %s", line)
	}
	parts := strings.Split(strings.TrimPrefix(line, `rsa1._domainkey.example.test. IN TXT `), " ")
	var joined []string
	for i := 0; i < len(parts); i++ {
		p := parts[i]
		if i == 0 { // "v=DKIM1; k=rsa; p=..." has spaces: rejoin the first string
			for !strings.HasSuffix(p, `"`) || len(p) == 1 {
				i++
				p += " " + parts[i]
			}
		}
		if len(p) < 2 || p[0] != '"' || p[len(p)-1] != '"' || len(p)-2 > 255 {
			t.Fatalf("bad string %q in %s", p, line)
		}
		joined = append(joined, p[1:len(p)-1])
	}
	if len(joined) < 2 || strings.Join(joined, "") != rec {
		t.Errorf("strings %q do not join back to %q", joined, rec)
	}
	ed := newKey(t, "example.test", "ed1", directory.AlgEd25519)
	rec, _ = Record(ed)
	if got := ZoneLine("ed1._domainkey.example.test", rec); got != `ed1._domainkey.example.test. IN TXT "`+rec+`"` || len(rec) != len("v=DKIM1; k=ed25519; p=")+44 {
		t.Errorf("ed25519 zone line %s", got)
	}
}

func TestGenerateKeyRefusesUnknownAlgorithm(t *testing.T) {
	if _, err := GenerateKey("dsa"); err == nil {
		t.Fatal("dsa key generated")
	}
}

// verifyScript checks every signature of a message with dkimpy, serving
// TXT records from a JSON map.
const verifyScript = `
import dkim, json, sys
msg = open(sys.argv[1], 'rb').read()
recs = json.load(open(sys.argv[2]))
def dnsfunc(name, timeout=5):
    r = recs.get(name.decode().rstrip('.'))
    return r.encode() if r else None
d = dkim.DKIM(msg)
n = msg.count(b'DKIM-Signature:')
for i in range(n):
    if not d.verify(idx=i, dnsfunc=dnsfunc):
        print('signature %d fails' % i)
        sys.exit(1)
print('verified %d' % n)
`

// TestPythonDKIMVerifies has an independent implementation, dkimpy (Debian
// python3-dkim), check our signatures.
func TestPythonDKIMVerifies(t *testing.T) {
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	if err := exec.Command(py, "-c", "import dkim, nacl.signing").Run(); err != nil {
		t.Skip("python3-dkim (with python3-nacl) not installed: apt-get install python3-dkim")
	}
	rsaKey := newKey(t, "example.test", "rsa1", directory.AlgRSA)
	edKey := newKey(t, "example.test", "ed1", directory.AlgEd25519)
	for _, keys := range [][]DKIMKey{{rsaKey}, {edKey}, {rsaKey, edKey}} {
		sig, err := New(memKeys{"example.test": keys}, nil).Sign("example.test", []byte(testMsg))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		msgFile, recFile := filepath.Join(dir, "msg.eml"), filepath.Join(dir, "dns.json")
		recs, _ := json.Marshal(dns(t, keys...))
		if err := os.WriteFile(msgFile, append(sig, testMsg...), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(recFile, recs, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(py, "-c", verifyScript, msgFile, recFile).CombinedOutput()
		if want := fmt.Sprintf("verified %d\n", len(keys)); err != nil || string(out) != want {
			t.Errorf("dkimpy on %d keys: %v\n%s\nmessage:\n%s%s", len(keys), err, out, sig, testMsg)
		}
		// And it must notice a change, or the check above proves nothing.
		tampered := strings.Replace(testMsg, "Hello Bob", "Hello Eve", 1)
		if err := os.WriteFile(msgFile, append(sig, tampered...), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(py, "-c", verifyScript, msgFile, recFile).CombinedOutput(); err == nil {
			t.Errorf("dkimpy accepts a changed body: %s", out)
		}
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
