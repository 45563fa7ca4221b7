package main

import (
	"encoding/json"
	"strings"
	"testing"

	"clustermail/api"
	"clustermail/directory"
	"clustermail/signing"
)

// dkimKeyJSON is what the API answers for a real generated key.
func dkimKeyJSON(t *testing.T, domain, selector, alg string, active bool) (string, string) {
	t.Helper()
	p, err := signing.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := signing.Record(directory.DKIMKey{Domain: domain, Selector: selector, Algorithm: alg, PrivateKey: p})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(api.DKIMKey{Domain: domain, Selector: selector, Algorithm: alg, Created: fakeCreated, Active: active,
		DNSName: signing.RecordName(domain, selector), DNSValue: rec})
	return string(b), rec
}

func TestDKIMCommands(t *testing.T) {
	rsaJSON, rsaRec := dkimKeyJSON(t, "example.test", "rsa-20261129", "rsa", true)
	edJSON, edRec := dkimKeyJSON(t, "example.test", "ed1", "ed25519", false)
	edOldJSON, _ := dkimKeyJSON(t, "example.test", "ed0", "ed25519", true)
	rsaLine := signing.ZoneLine("rsa-20261129._domainkey.example.test", rsaRec)
	if !strings.Contains(rsaLine, `" "`) {
		t.Fatalf("an RSA record must be split in strings: %s", rsaLine)
	}
	tests := []struct {
		name     string
		args     []string
		routes   map[string]reply
		want     []request
		exactOut string
		wantOut  []string
		wantErr  string
	}{
		{
			name:   "generate rsa by default",
			args:   []string{"dkim", "generate", "example.test"},
			routes: map[string]reply{"POST /v1/dkim": {201, rsaJSON}},
			want:   []request{{method: "POST", uri: "/v1/dkim", body: `"domain":"example.test"|"algorithm":"rsa"`}},
			exactOut: "; DKIM key rsa-20261129 (rsa) of example.test: publish this TXT record in the zone of example.test\n" +
				rsaLine + "\n",
		},
		{
			name:   "generate ed25519 behind an older key",
			args:   []string{"dkim", "generate", "example.test", "--algorithm", "Ed25519", "--selector", "ed1"},
			routes: map[string]reply{"POST /v1/dkim": {201, edJSON}, "GET /v1/dkim/example.test": {0, "[" + edOldJSON + "," + edJSON + "]"}},
			want:   []request{{method: "POST", uri: "/v1/dkim", body: `"selector":"ed1"|"algorithm":"ed25519"`}, {method: "GET", uri: "/v1/dkim/example.test"}},
			wantOut: []string{"; DKIM key ed1 (ed25519) of example.test",
				"the older ed25519 key ed0 still signs; once this record is published, remove it: clustermail dkim remove example.test ed0\n",
				"some receivers only verify RSA", `ed1._domainkey.example.test. IN TXT "` + edRec + `"` + "\n"},
		},
		{
			name:    "generate for a domain not hosted",
			args:    []string{"dkim", "generate", "other.test"},
			routes:  map[string]reply{"POST /v1/dkim": {404, `{"error":"domain other.test is not hosted: add it first"}`}},
			wantErr: "dkim generate: other.test: domain other.test is not hosted: add it first",
		},
		{
			name:    "generate with an unknown algorithm",
			args:    []string{"dkim", "generate", "example.test", "--algorithm", "dsa"},
			want:    []request{},
			wantErr: `dkim generate: example.test: --algorithm must be rsa or ed25519, not "dsa"`,
		},
		{
			name:   "generate json",
			args:   []string{"dkim", "generate", "example.test", "--json"},
			routes: map[string]reply{"POST /v1/dkim": {201, rsaJSON}},
			wantOut: []string{`"selector": "rsa-20261129"`, `"active": true`,
				`"dns_name": "rsa-20261129._domainkey.example.test"`, `"dns_value": "v=DKIM1; k=rsa; p=`},
		},
		{
			name:   "show",
			args:   []string{"dkim", "show", "example.test"},
			routes: map[string]reply{"GET /v1/dkim/example.test": {0, "[" + rsaJSON + "," + edJSON + "]"}},
			exactOut: "; rsa-20261129 (rsa), created " + formatTime(fakeCreated) + ", signs\n" + rsaLine + "\n" +
				"; ed1 (ed25519), created " + formatTime(fakeCreated) + ", waits for the older ed25519 key to be removed\n" +
				`ed1._domainkey.example.test. IN TXT "` + edRec + `"` + "\n",
		},
		{
			name:     "show one selector",
			args:     []string{"dkim", "show", "example.test", "--selector", "ED1"},
			routes:   map[string]reply{"GET /v1/dkim/example.test": {0, "[" + rsaJSON + "," + edJSON + "]"}},
			wantOut:  []string{"; ed1 (ed25519)", "ed1._domainkey.example.test. IN TXT"},
			exactOut: "",
		},
		{
			name:    "show without keys",
			args:    []string{"dkim", "show", "example.test"},
			routes:  map[string]reply{"GET /v1/dkim/example.test": {0, "[]"}},
			wantErr: "dkim show: example.test: no DKIM key: create one with clustermail dkim generate example.test",
		},
		{
			name:   "list",
			args:   []string{"dkim", "list"},
			routes: map[string]reply{"GET /v1/dkim": {0, "[" + rsaJSON + "," + edJSON + "]"}},
			exactOut: "DOMAIN        SELECTOR      ALGORITHM  SIGNING  CREATED\n" +
				"example.test  rsa-20261129  rsa        yes      " + formatTime(fakeCreated) + "\n" +
				"example.test  ed1           ed25519    no       " + formatTime(fakeCreated) + "\n",
		},
		{
			name:     "list empty",
			args:     []string{"dkim", "ls", "example.test"},
			routes:   map[string]reply{"GET /v1/dkim/example.test": {0, "[]"}},
			exactOut: "no DKIM keys\n",
		},
		{
			name:     "remove",
			args:     []string{"dkim", "remove", "example.test", "ed1"},
			routes:   map[string]reply{"DELETE /v1/dkim/example.test/ed1": {204, ""}},
			want:     []request{{method: "DELETE", uri: "/v1/dkim/example.test/ed1"}},
			wantOut:  []string{"removed DKIM key ed1 of example.test"},
			exactOut: "",
		},
		{
			name:    "remove missing",
			args:    []string{"dkim", "rm", "example.test", "nope"},
			routes:  map[string]reply{"DELETE /v1/dkim/example.test/nope": {404, `{"error":"domain example.test has no DKIM key with selector nope"}`}},
			wantErr: "dkim remove: example.test nope: domain example.test has no DKIM key with selector nope",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			f, srv := newFakeAPI(t, tt.routes)
			stdout, err := runCmd(t, "", append(tt.args, "--api", srv.URL)...)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if tt.exactOut != "" && stdout != tt.exactOut {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout, tt.exactOut)
			}
			rest := stdout
			for _, w := range tt.wantOut {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("stdout lacks %q (in order):\n%s", w, stdout)
				}
				rest = rest[i+len(w):]
			}
			if tt.want == nil {
				return
			}
			got := f.requests()
			if len(got) != len(tt.want) {
				t.Fatalf("requests %+v, want %+v", got, tt.want)
			}
			for i, w := range tt.want {
				if got[i].method != w.method || got[i].uri != w.uri {
					t.Errorf("request %d: %s %s, want %s %s", i, got[i].method, got[i].uri, w.method, w.uri)
				}
				for _, frag := range strings.Split(w.body, "|") {
					if frag != "" && !strings.Contains(got[i].body, frag) {
						t.Errorf("request %d body %s lacks %s", i, got[i].body, frag)
					}
				}
			}
		})
	}
}
