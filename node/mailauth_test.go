package node

import (
	"testing"
	"time"
)

func TestMailAuthConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"defaults", Config{MailAuth: true, Hostname: "mx1.example.org", MailAuthTrusted: []string{"127.0.0.0/8", "::1/128"}}, false},
		{"bare address and empty entry", Config{MailAuth: true, Hostname: "mx", MailAuthTrusted: []string{"10.0.0.5", ""}}, false},
		{"bad network", Config{MailAuth: true, Hostname: "mx", MailAuthTrusted: []string{"10.0.0.0/33"}}, true},
		{"id with a blank", Config{MailAuth: true, Hostname: "mx", MailAuthID: "example org"}, true},
		{"id with a semicolon", Config{MailAuth: true, Hostname: "a;b"}, true},
		{"no id needed when off", Config{Hostname: "a;b"}, false},
		{"negative timeout", Config{MailAuth: true, Hostname: "mx", MailAuthTimeout: -time.Second}, true},
	}
	for _, tc := range tests {
		if err := tc.cfg.validateMailAuth(); (err != nil) != tc.wantErr {
			t.Errorf("%s: %v, want error %v", tc.name, err, tc.wantErr)
		}
	}
	p, err := parsePrefixes([]string{"10.0.0.5", "192.0.2.77/24"})
	if err != nil || len(p) != 2 || p[0].String() != "10.0.0.5/32" || p[1].String() != "192.0.2.0/24" {
		t.Errorf("parsePrefixes: %v, %v", p, err)
	}
}

// Off means no checker at all: a typed nil would look like one to smtpd.
func TestMailAuthOff(t *testing.T) {
	ma, err := newMailAuth(Config{MailAuth: false}, nil)
	if err != nil || ma != nil {
		t.Fatalf("newMailAuth with --mail-auth=false: %v, %v; want nil, nil", ma, err)
	}
}
