package outbound

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDNSResolver(t *testing.T) {
	t.Parallel()
	records := []string{
		"mx.test. MX 20 b.mx.test.",
		"mx.test. MX 10 a.mx.test.",
		"mx.test. A 192.0.2.99", // not asked for by MX
		"nullmx.test. MX 0 .",
		"alias.test. CNAME mx.test.",
		"alias.test. MX 10 a.mx.test.", // what a recursive server appends after the CNAME
		"host.test. A 192.0.2.1",
		"host.test. AAAA 2001:db8::1",
		"v6only.test. AAAA 2001:db8::2",
		"txtonly.test. TXT hello",
		"SERVFAIL broken.test",
	}
	// More A records than fit in a UDP answer of ednsSize bytes.
	var big []string
	for i := range 200 {
		big = append(big, fmt.Sprintf("192.0.%d.%d", 2+i/250, 1+i%250))
		records = append(records, "big.test. A "+big[i])
	}
	l := newLab(t, records...)
	res, err := NewDNSResolver(l.dns)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	mxTests := []struct {
		name    string
		domain  string
		want    []string // "pref host"
		wantErr error    // ErrNotFound, errTemporary, or nil
	}{
		{"records in answer order", "mx.test", []string{"20 b.mx.test.", "10 a.mx.test."}, nil},
		{"trailing dot accepted", "mx.test.", []string{"20 b.mx.test.", "10 a.mx.test."}, nil},
		{"case insensitive", "MX.Test", []string{"20 b.mx.test.", "10 a.mx.test."}, nil},
		{"null MX", "nullmx.test", []string{"0 ."}, nil},
		{"CNAME in the answer skipped", "alias.test", []string{"10 a.mx.test."}, nil},
		{"no MX is empty, not an error", "host.test", nil, nil},
		{"NXDOMAIN", "nowhere.test", nil, ErrNotFound},
		{"SERVFAIL is temporary", "broken.test", nil, errTemporary},
		{"invalid name", "a..b", nil, ErrNotFound},
	}
	for _, tt := range mxTests {
		t.Run("MX/"+tt.name, func(t *testing.T) {
			mxs, err := res.LookupMX(ctx, tt.domain)
			checkErr(t, err, tt.wantErr)
			var got []string
			for _, mx := range mxs {
				got = append(got, fmt.Sprintf("%d %s", mx.Pref, mx.Host))
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}

	ipTests := []struct {
		name    string
		host    string
		want    []string
		wantErr error
		wantTCP bool
	}{
		{"A and AAAA", "host.test", []string{"192.0.2.1", "2001:db8::1"}, nil, false},
		{"AAAA only", "v6only.test", []string{"2001:db8::2"}, nil, false},
		{"no address is empty", "txtonly.test", nil, nil, false},
		{"NXDOMAIN", "nowhere.test", nil, ErrNotFound, false},
		{"SERVFAIL", "broken.test", nil, errTemporary, false},
		{"truncated UDP answer asked again over TCP", "big.test", big, nil, true},
	}
	for _, tt := range ipTests {
		t.Run("IP/"+tt.name, func(t *testing.T) {
			tcpBefore := l.zone.tcpQueries()
			ips, err := res.LookupIP(ctx, tt.host)
			checkErr(t, err, tt.wantErr)
			var got []string
			for _, ip := range ips {
				got = append(got, ip.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %d addresses %q, want %d", len(got), got, len(tt.want))
			}
			if usedTCP := l.zone.tcpQueries() > tcpBefore; usedTCP != tt.wantTCP {
				t.Fatalf("TCP used: %v, want %v", usedTCP, tt.wantTCP)
			}
		})
	}
}

// errTemporary stands, in test tables, for "an error, not ErrNotFound".
var errTemporary = errors.New("temporary")

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want == ErrNotFound && !errors.Is(err, ErrNotFound):
		t.Fatalf("err = %v, want ErrNotFound", err)
	case want == errTemporary && (err == nil || errors.Is(err, ErrNotFound)):
		t.Fatalf("err = %v, want a temporary error", err)
	}
}

func TestDNSResolverUnreachable(t *testing.T) {
	t.Parallel()
	// A UDP port we hold and never answer on: the lookup must end with the
	// context, as a temporary error.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	res, err := NewDNSResolver(pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err = res.LookupMX(ctx, "example.test")
	checkErr(t, err, errTemporary)
}

func TestNewDNSResolver(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"127.0.0.1", "nonsense"} {
		if _, err := NewDNSResolver(bad); err == nil {
			t.Errorf("NewDNSResolver(%q) accepted an address without port", bad)
		}
	}
	b, err := os.ReadFile("/etc/resolv.conf")
	if err != nil || !strings.Contains(string(b), "nameserver") {
		t.Skip("no /etc/resolv.conf with a nameserver here")
	}
	r, err := NewDNSResolver("")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.servers) == 0 {
		t.Fatal("no servers from /etc/resolv.conf")
	}
	for _, s := range r.servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			t.Errorf("server %q: %v", s, err)
		}
	}
}
