package outbound

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

const testBody = "From: a@origin.test\r\nSubject: hi\r\n\r\nhello\r\n.leading dot\r\n"

// want is the expected Result of one recipient; reply is a prefix.
type want struct {
	status Status
	reply  string
	remote string
	tls    bool
}

func TestDeliver(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		records []string
		// setup starts the lab's servers and returns the server-side
		// checks to run after delivery.
		setup  func(l *lab) func(t *testing.T)
		domain string
		from   string
		rcpts  []string
		body   string
		want   []want
	}{
		{
			name: "best MX takes it",
			records: []string{
				"a.test. MX 10 mx1.a.test.", "a.test. MX 20 mx2.a.test.",
				"mx1.a.test. A 127.0.0.2", "mx2.a.test. A 127.0.0.3",
			},
			setup: func(l *lab) func(*testing.T) {
				mx1, mx2 := l.startMTA(2, &mta{}), l.startMTA(3, &mta{})
				return func(t *testing.T) {
					txs := mx1.transactions()
					if len(txs) != 1 {
						t.Fatalf("mx1 got %d transactions", len(txs))
					}
					tx := txs[0]
					if tx.from != "s@origin.test" || !slices.Equal(tx.rcpts, []string{"u@a.test"}) || string(tx.body) != testBody {
						t.Errorf("mx1 got from %q rcpts %q body %q", tx.from, tx.rcpts, tx.body)
					}
					if tx.ehloName != testHostname {
						t.Errorf("EHLO %q, want %q", tx.ehloName, testHostname)
					}
					if n := mx2.connections(); n != 0 {
						t.Errorf("mx2 got %d connections", n)
					}
				}
			},
			domain: "a.test", rcpts: []string{"u@a.test"},
			want: []want{{Delivered, "250 2.0.0", "mx1.a.test", false}},
		},
		{
			name: "past a 4xx greeting and a dead host to the third MX",
			records: []string{
				"b.test. MX 30 mx3.b.test.", "b.test. MX 10 mx1.b.test.",
				"b.test. MX 40 mx4.b.test.", "b.test. MX 20 mx2.b.test.",
				"mx1.b.test. A 127.0.0.2", "mx2.b.test. A 127.0.0.3",
				"mx3.b.test. A 127.0.0.4", "mx4.b.test. A 127.0.0.5",
			},
			setup: func(l *lab) func(*testing.T) {
				mx1 := l.startFake(2, &fake{greeting: "421 4.3.2 busy, try later"})
				mx3, mx4 := l.startMTA(4, &mta{}), l.startMTA(5, &mta{})
				return func(t *testing.T) {
					if got := mx1.commands(); !slices.Equal(got, []string{"QUIT"}) {
						t.Errorf("mx1 got %q, want only QUIT", got)
					}
					if len(mx3.transactions()) != 1 || mx4.connections() != 0 {
						t.Errorf("mx3 got %d transactions, mx4 %d connections", len(mx3.transactions()), mx4.connections())
					}
				}
			},
			domain: "b.test", rcpts: []string{"u@b.test"},
			want: []want{{Delivered, "250 ", "mx3.b.test", false}},
		},
		{
			name:    "no MX: the domain's address is the mail host",
			records: []string{"nomx.test. A 127.0.0.2"},
			setup:   func(l *lab) func(*testing.T) { l.startMTA(2, &mta{}); return nil },
			domain:  "nomx.test", rcpts: []string{"u@nomx.test"},
			want: []want{{Delivered, "250 ", "nomx.test", false}},
		},
		{
			name:    "null MX bounces",
			records: []string{"nullmx.test. MX 0 .", "nullmx.test. A 127.0.0.2"},
			setup: func(l *lab) func(*testing.T) {
				m := l.startMTA(2, &mta{})
				return func(t *testing.T) {
					if m.connections() != 0 {
						t.Error("connected to the address of a null-MX domain")
					}
				}
			},
			domain: "nullmx.test", rcpts: []string{"u@nullmx.test", "v@nullmx.test"},
			want: []want{
				{Failed, "556 5.1.10 domain nullmx.test has a null MX (RFC 7505): it accepts no mail", "", false},
				{Failed, "556 5.1.10 ", "", false},
			},
		},
		{
			name:   "NXDOMAIN bounces",
			domain: "nowhere.test", rcpts: []string{"u@nowhere.test"},
			want: []want{{Failed, "550 5.1.2 domain nowhere.test does not exist", "", false}},
		},
		{
			name:    "SERVFAIL defers",
			records: []string{"SERVFAIL servfail.test"},
			domain:  "servfail.test", rcpts: []string{"u@servfail.test"},
			want: []want{{Deferred, "451 4.4.3 DNS lookup of MX for servfail.test failed", "", false}},
		},
		{
			name:    "mixed recipient replies in one transaction",
			records: []string{"mixed.test. MX 10 mx.mixed.test.", "mx.mixed.test. A 127.0.0.2"},
			setup: func(l *lab) func(*testing.T) {
				m := l.startMTA(2, &mta{})
				return func(t *testing.T) {
					txs := m.transactions()
					if len(txs) != 1 || m.connections() != 1 {
						t.Fatalf("%d transactions over %d connections, want one of each", len(txs), m.connections())
					}
					if want := []string{"ok1@mixed.test", "ok2@mixed.test"}; !slices.Equal(txs[0].rcpts, want) {
						t.Errorf("server accepted %q, want %q", txs[0].rcpts, want)
					}
				}
			},
			domain: "mixed.test", rcpts: []string{"ok1@mixed.test", "busy@mixed.test", "nouser@mixed.test", "ok2@mixed.test"},
			want: []want{
				{Delivered, "250 2.0.0 ", "mx.mixed.test", false},
				{Deferred, "450 4.2.1 <busy@mixed.test>: mailbox busy", "mx.mixed.test", false},
				{Failed, "550 5.1.1 <nouser@mixed.test>: no such user", "mx.mixed.test", false},
				{Delivered, "250 2.0.0 ", "mx.mixed.test", false},
			},
		},
		{
			name:    "no recipient accepted: no DATA",
			records: []string{"norcpt.test. MX 10 mx.norcpt.test.", "mx.norcpt.test. A 127.0.0.2"},
			setup: func(l *lab) func(*testing.T) {
				m := l.startMTA(2, &mta{})
				return func(t *testing.T) {
					for _, tx := range m.transactions() {
						if tx.gotData {
							t.Error("DATA sent with no accepted recipient")
						}
					}
				}
			},
			domain: "norcpt.test", rcpts: []string{"nouser1@norcpt.test", "busy@norcpt.test"},
			want: []want{
				{Failed, "550 5.1.1 ", "mx.norcpt.test", false},
				{Deferred, "450 4.2.1 ", "mx.norcpt.test", false},
			},
		},
		{
			name:    "421 to RCPT ends the session",
			records: []string{"closing.test. MX 10 mx.closing.test.", "mx.closing.test. A 127.0.0.2"},
			setup:   func(l *lab) func(*testing.T) { l.startMTA(2, &mta{}); return nil },
			domain:  "closing.test", rcpts: []string{"ok@closing.test", "closing@closing.test", "ok2@closing.test"},
			want: []want{
				{Deferred, "421 4.3.2 shutting down", "mx.closing.test", false},
				{Deferred, "421 4.3.2 shutting down", "mx.closing.test", false},
				{Deferred, "421 4.3.2 shutting down", "mx.closing.test", false},
			},
		},
		{
			name:    "STARTTLS with a self-signed certificate",
			records: []string{"tls.test. MX 10 mx.tls.test.", "mx.tls.test. A 127.0.0.2"},
			setup: func(l *lab) func(*testing.T) {
				m := l.startMTA(2, &mta{tlsConfig: selfSigned(l.t)})
				return func(t *testing.T) {
					// go-smtp opens a session at each EHLO: ours must be
					// our name both before and after the handshake.
					want := []helo{{testHostname, false}, {testHostname, true}}
					if got := m.hellos(); !slices.Equal(got, want) {
						t.Errorf("EHLOs %v, want %v", got, want)
					}
					if txs := m.transactions(); len(txs) != 1 || !txs[0].tls {
						t.Errorf("transactions %+v, want one over TLS", txs)
					}
				}
			},
			domain: "tls.test", rcpts: []string{"u@tls.test"},
			want: []want{{Delivered, "250 ", "mx.tls.test", true}},
		},
		{
			name:    "failed TLS handshake retried in the clear",
			records: []string{"badtls.test. MX 10 mx.badtls.test.", "mx.badtls.test. A 127.0.0.2"},
			setup: func(l *lab) func(*testing.T) {
				m := l.startMTA(2, &mta{tlsConfig: brokenTLS()})
				return func(t *testing.T) {
					if n := m.connections(); n != 2 {
						t.Errorf("%d connections, want 2 (TLS, then clear)", n)
					}
					if txs := m.transactions(); len(txs) != 1 || txs[0].tls {
						t.Errorf("transactions %+v, want one in the clear", txs)
					}
				}
			},
			domain: "badtls.test", rcpts: []string{"u@badtls.test"},
			want: []want{{Delivered, "250 ", "mx.badtls.test", false}},
		},
		{
			name:    "STARTTLS refused: on in the clear, same connection",
			records: []string{"notls.test. MX 10 mx.notls.test.", "mx.notls.test. A 127.0.0.2"},
			setup: func(l *lab) func(*testing.T) {
				f := l.startFake(2, &fake{greeting: "220 fake", caps: []string{"STARTTLS"}, starttls: "454 4.7.0 TLS not available\r\n"})
				return func(t *testing.T) {
					got := f.commands()
					want := []string{"EHLO " + testHostname, "STARTTLS", "MAIL FROM:<s@origin.test>", "RCPT TO:<u@notls.test>", "DATA", "QUIT"}
					if !slices.Equal(got, want) {
						t.Errorf("commands %q, want %q", got, want)
					}
				}
			},
			domain: "notls.test", rcpts: []string{"u@notls.test"},
			want: []want{{Delivered, "250 2.0.0 queued", "mx.notls.test", false}},
		},
		{
			name:    "data sent before the TLS handshake is not believed",
			records: []string{"inject.test. MX 10 mx.inject.test.", "mx.inject.test. A 127.0.0.2"},
			setup: func(l *lab) func(*testing.T) {
				l.startFake(2, &fake{
					greeting: "220 fake", caps: []string{"STARTTLS"}, tlsConfig: selfSigned(l.t),
					// One write: the injected line arrives with the 220.
					starttls: "220 2.0.0 ready\r\n554 5.7.1 injected refusal\r\n",
				})
				return nil
			},
			domain: "inject.test", rcpts: []string{"u@inject.test"},
			want: []want{{Delivered, "250 2.0.0 queued", "mx.inject.test", true}},
		},
		{
			name:    "HELO for a server without EHLO",
			records: []string{"helo.test. MX 10 mx.helo.test.", "mx.helo.test. A 127.0.0.2"},
			setup: func(l *lab) func(*testing.T) {
				f := l.startFake(2, &fake{greeting: "220 old", noEHLO: true})
				return func(t *testing.T) {
					if got := f.commands(); len(got) < 2 || got[1] != "HELO "+testHostname {
						t.Errorf("commands %q, want HELO after EHLO", got)
					}
				}
			},
			domain: "helo.test", rcpts: []string{"u@helo.test"},
			want: []want{{Delivered, "250 ", "mx.helo.test", false}},
		},
		{
			name:    "connection lost in the middle of DATA defers",
			records: []string{"drop.test. MX 10 mx.drop.test.", "mx.drop.test. A 127.0.0.2"},
			setup:   func(l *lab) func(*testing.T) { l.startMTA(2, &mta{dropInData: true}); return nil },
			domain:  "drop.test", rcpts: []string{"u@drop.test", "nouser@drop.test"},
			// A big body, so the server hangs up while we still write.
			body: "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 998)+"\r\n", 2000),
			want: []want{
				{Deferred, "451 4.4.2 ", "mx.drop.test", false},
				{Failed, "550 5.1.1 ", "mx.drop.test", false},
			},
		},
		{
			name:    "5xx at the end of DATA bounces the accepted recipients",
			records: []string{"data5.test. MX 10 mx.data5.test.", "mx.data5.test. A 127.0.0.2"},
			setup: func(l *lab) func(*testing.T) {
				l.startMTA(2, &mta{dataErr: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "content rejected"}})
				return nil
			},
			domain: "data5.test", rcpts: []string{"u@data5.test", "busy@data5.test", "v@data5.test"},
			want: []want{
				{Failed, "554 5.6.0 content rejected", "mx.data5.test", false},
				{Deferred, "450 4.2.1 ", "mx.data5.test", false},
				{Failed, "554 5.6.0 content rejected", "mx.data5.test", false},
			},
		},
		{
			name:    "4xx at the end of DATA defers",
			records: []string{"data4.test. MX 10 mx.data4.test.", "mx.data4.test. A 127.0.0.2"},
			setup: func(l *lab) func(*testing.T) {
				l.startMTA(2, &mta{dataErr: &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "disk full"}})
				return nil
			},
			domain: "data4.test", rcpts: []string{"u@data4.test"},
			want: []want{{Deferred, "452 4.3.1 disk full", "mx.data4.test", false}},
		},
		{
			name:    "null sender is MAIL FROM:<>",
			records: []string{"bounce.test. MX 10 mx.bounce.test.", "mx.bounce.test. A 127.0.0.2"},
			setup: func(l *lab) func(*testing.T) {
				f := l.startFake(2, &fake{greeting: "220 fake"})
				return func(t *testing.T) {
					if got := f.commands(); !slices.Contains(got, "MAIL FROM:<>") {
						t.Errorf("commands %q, want MAIL FROM:<>", got)
					}
				}
			},
			domain: "bounce.test", from: "<>", rcpts: []string{"u@bounce.test"},
			want: []want{{Delivered, "250 ", "mx.bounce.test", false}},
		},
		{
			name: "5xx greeting from the last host bounces",
			records: []string{
				"greet5.test. MX 10 mx1.greet5.test.", "greet5.test. MX 20 mx2.greet5.test.",
				"mx1.greet5.test. A 127.0.0.2", "mx2.greet5.test. A 127.0.0.3",
			},
			setup: func(l *lab) func(*testing.T) {
				l.startFake(3, &fake{greeting: "554 5.7.1 no service for you"})
				return nil
			},
			domain: "greet5.test", rcpts: []string{"u@greet5.test"},
			want: []want{{Failed, "554 5.7.1 no service for you", "mx2.greet5.test", false}},
		},
		{
			name: "5xx greeting skipped for a later host",
			records: []string{
				"greet5ok.test. MX 10 mx1.greet5ok.test.", "greet5ok.test. MX 20 mx2.greet5ok.test.",
				"mx1.greet5ok.test. A 127.0.0.2", "mx2.greet5ok.test. A 127.0.0.3",
			},
			setup: func(l *lab) func(*testing.T) {
				l.startFake(2, &fake{greeting: "554 5.7.1 no service for you"})
				l.startMTA(3, &mta{})
				return nil
			},
			domain: "greet5ok.test", rcpts: []string{"u@greet5ok.test"},
			want: []want{{Delivered, "250 ", "mx2.greet5ok.test", false}},
		},
		{
			name: "5xx to MAIL FROM is final",
			records: []string{
				"mail5.test. MX 10 mx1.mail5.test.", "mail5.test. MX 20 mx2.mail5.test.",
				"mx1.mail5.test. A 127.0.0.2", "mx2.mail5.test. A 127.0.0.3",
			},
			setup: func(l *lab) func(*testing.T) {
				l.startMTA(2, &mta{mailErr: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender refused"}})
				mx2 := l.startMTA(3, &mta{})
				return func(t *testing.T) {
					if mx2.connections() != 0 {
						t.Error("tried the next host after a 5xx to MAIL FROM")
					}
				}
			},
			domain: "mail5.test", rcpts: []string{"u@mail5.test", "v@mail5.test"},
			want: []want{
				{Failed, "550 5.7.1 sender refused", "mx1.mail5.test", false},
				{Failed, "550 5.7.1 sender refused", "mx1.mail5.test", false},
			},
		},
		{
			name: "4xx to MAIL FROM: the next host",
			records: []string{
				"mail4.test. MX 10 mx1.mail4.test.", "mail4.test. MX 20 mx2.mail4.test.",
				"mx1.mail4.test. A 127.0.0.2", "mx2.mail4.test. A 127.0.0.3",
			},
			setup: func(l *lab) func(*testing.T) {
				l.startMTA(2, &mta{mailErr: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted"}})
				l.startMTA(3, &mta{})
				return nil
			},
			domain: "mail4.test", rcpts: []string{"u@mail4.test"},
			want: []want{{Delivered, "250 ", "mx2.mail4.test", false}},
		},
		{
			name: "every host down: deferred with the last error",
			records: []string{
				"down.test. MX 10 mx1.down.test.", "down.test. MX 20 mx2.down.test.",
				"mx1.down.test. A 127.0.0.2", "mx2.down.test. A 127.0.0.3",
			},
			domain: "down.test", rcpts: []string{"u@down.test"},
			want: []want{{Deferred, "451 4.4.1 connection refused by mx2.down.test [127.0.0.3]", "", false}},
		},
		{
			name: "every address of a host until one answers",
			records: []string{
				"multi.test. MX 10 mx1.multi.test.", "multi.test. MX 20 mx2.multi.test.",
				"mx1.multi.test. A 127.0.0.9", "mx1.multi.test. AAAA ::1", "mx1.multi.test. A 127.0.0.2",
				"mx2.multi.test. A 127.0.0.3",
			},
			setup: func(l *lab) func(*testing.T) {
				l.startMTA(2, &mta{})
				return nil
			},
			domain: "multi.test", rcpts: []string{"u@multi.test"},
			want: []want{{Delivered, "250 ", "mx1.multi.test", false}},
		},
		{
			name: "an MX host that does not resolve is skipped",
			records: []string{
				"ghost.test. MX 10 nxhost.ghost.test.", "ghost.test. MX 20 mx2.ghost.test.",
				"mx2.ghost.test. A 127.0.0.2",
			},
			setup:  func(l *lab) func(*testing.T) { l.startMTA(2, &mta{}); return nil },
			domain: "ghost.test", rcpts: []string{"u@ghost.test"},
			want: []want{{Delivered, "250 ", "mx2.ghost.test", false}},
		},
		{
			name:    "MX hosts without address defer",
			records: []string{"ghosts.test. MX 10 nxhost.ghosts.test."},
			domain:  "ghosts.test", rcpts: []string{"u@ghosts.test"},
			want: []want{{Deferred, "451 4.4.4 mail host nxhost.ghosts.test has no address", "", false}},
		},
		{
			name:    "an IP literal as MX is taken as itself",
			records: []string{"literal.test. MX 10 127.0.0.2."},
			setup:   func(l *lab) func(*testing.T) { l.startMTA(2, &mta{}); return nil },
			domain:  "literal.test", rcpts: []string{"u@literal.test"},
			want: []want{{Delivered, "250 ", "127.0.0.2", false}},
		},
		{
			name:    "no MX and no address bounces",
			records: []string{"noaddr.test. TXT hello"},
			domain:  "noaddr.test", rcpts: []string{"u@noaddr.test"},
			want: []want{{Failed, "550 5.4.4 domain noaddr.test has no MX and no address record", "", false}},
		},
		{
			name:    "SIZE and BODY=8BITMIME when offered and needed",
			records: []string{"eight.test. MX 10 mx.eight.test.", "mx.eight.test. A 127.0.0.2"},
			setup: func(l *lab) func(*testing.T) {
				m := l.startMTA(2, &mta{maxBytes: 1 << 20})
				return func(t *testing.T) {
					txs := m.transactions()
					if len(txs) != 1 {
						t.Fatalf("%d transactions", len(txs))
					}
					o := txs[0].opts
					if o.Body != smtp.Body8BitMIME || o.Size != int64(len("Subject: x\r\n\r\ncafé\r\n")) || o.UTF8 {
						t.Errorf("MAIL options %+v", o)
					}
				}
			},
			domain: "eight.test", rcpts: []string{"u@eight.test"}, body: "Subject: x\r\n\r\ncafé\r\n",
			want: []want{{Delivered, "250 ", "mx.eight.test", false}},
		},
		{
			name:    "UTF-8 in the header: SMTPUTF8 when offered",
			records: []string{"hdr8.test. MX 10 mx.hdr8.test.", "mx.hdr8.test. A 127.0.0.2"},
			setup: func(l *lab) func(*testing.T) {
				m := l.startMTA(2, &mta{smtputf8: true})
				return func(t *testing.T) {
					if txs := m.transactions(); len(txs) != 1 || !txs[0].opts.UTF8 || txs[0].opts.Body != smtp.Body8BitMIME {
						t.Errorf("transactions %+v, want one with SMTPUTF8 and 8BITMIME", txs)
					}
				}
			},
			domain: "hdr8.test", rcpts: []string{"u@hdr8.test"}, body: "Subject: café\r\n\r\nx\r\n",
			want: []want{{Delivered, "250 ", "mx.hdr8.test", false}},
		},
		{
			name:    "5xx to the DATA command bounces",
			records: []string{"data5cmd.test. MX 10 mx.data5cmd.test.", "mx.data5cmd.test. A 127.0.0.2"},
			setup: func(l *lab) func(*testing.T) {
				l.startFake(2, &fake{greeting: "220 fake", dataReply: "554 5.5.1 no valid recipients\r\n"})
				return nil
			},
			domain: "data5cmd.test", rcpts: []string{"u@data5cmd.test"},
			want: []want{{Failed, "554 5.5.1 no valid recipients", "mx.data5cmd.test", false}},
		},
		{
			name:    "250 to the DATA command is a protocol error, deferred",
			records: []string{"data2cmd.test. MX 10 mx.data2cmd.test.", "mx.data2cmd.test. A 127.0.0.2"},
			setup: func(l *lab) func(*testing.T) {
				l.startFake(2, &fake{greeting: "220 fake", dataReply: "250 2.0.0 sure\r\n"})
				return nil
			},
			domain: "data2cmd.test", rcpts: []string{"u@data2cmd.test"},
			want: []want{{Deferred, "451 4.5.0 mx.data2cmd.test [127.0.0.2] after DATA: SMTP protocol violation: DATA answered 250 2.0.0 sure instead of 354", "mx.data2cmd.test", false}},
		},
		{
			name:    "SMTPUTF8 address to a server without it bounces",
			records: []string{"utf8no.test. MX 10 mx.utf8no.test.", "mx.utf8no.test. A 127.0.0.2"},
			setup:   func(l *lab) func(*testing.T) { l.startMTA(2, &mta{}); return nil },
			domain:  "utf8no.test", rcpts: []string{"jürgen@utf8no.test", "u@utf8no.test"},
			want: []want{
				{Failed, "553 5.6.7 ", "mx.utf8no.test", false},
				{Failed, "553 5.6.7 ", "mx.utf8no.test", false},
			},
		},
		{
			name:    "SMTPUTF8 address to a server with it",
			records: []string{"utf8.test. MX 10 mx.utf8.test.", "mx.utf8.test. A 127.0.0.2"},
			setup: func(l *lab) func(*testing.T) {
				m := l.startMTA(2, &mta{smtputf8: true})
				return func(t *testing.T) {
					if txs := m.transactions(); len(txs) != 1 || !txs[0].opts.UTF8 || txs[0].rcpts[0] != "jürgen@utf8.test" {
						t.Errorf("transactions %+v, want one with SMTPUTF8", txs)
					}
				}
			},
			domain: "utf8.test", rcpts: []string{"jürgen@utf8.test"},
			want: []want{{Delivered, "250 ", "mx.utf8.test", false}},
		},
		{
			name:   "addresses that would inject commands are refused",
			domain: "never.looked.up", rcpts: []string{"u@x\r\nRSET", ""},
			want: []want{
				{Failed, "553 5.1.3 invalid recipient address", "", false},
				{Failed, "553 5.1.3 ", "", false},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t, tt.records...)
			var check func(*testing.T)
			if tt.setup != nil {
				check = tt.setup(l)
			}
			from, body := tt.from, tt.body
			switch from {
			case "":
				from = "s@origin.test"
			case "<>":
				from = ""
			}
			if body == "" {
				body = testBody
			}
			got := l.client().Deliver(t.Context(), tt.domain, from, tt.rcpts, []byte(body))
			checkResults(t, got, tt.rcpts, tt.want)
			if check != nil {
				check(t)
			}
		})
	}
}

func checkResults(t *testing.T, got []Result, rcpts []string, want []want) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Recipient != rcpts[i] || g.Status != w.status || !strings.HasPrefix(g.Reply, w.reply) || g.RemoteMTA != w.remote || g.TLS != w.tls {
			t.Errorf("result %d = %+v (%v)\nwant %s, reply %q…, remote %q, TLS %v", i, g, g.Status, w.status, w.reply, w.remote, w.tls)
		}
	}
}

func TestDeliverCanceled(t *testing.T) {
	t.Parallel()
	l := newLab(t, "slow.test. MX 10 mx.slow.test.", "mx.slow.test. A 127.0.0.2")
	l.startFake(2, &fake{}) // accepts, never greets
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	got := l.client().Deliver(ctx, "slow.test", "s@origin.test", []string{"u@slow.test"}, []byte(testBody))
	checkResults(t, got, []string{"u@slow.test"}, []want{{Deferred, "451 4.3.0 delivery interrupted", "", false}})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Deliver took %v after its context ended", d)
	}
}

// fakeResolver answers from maps: a name absent from both is NXDOMAIN.
type fakeResolver struct {
	mx    map[string][]*net.MX
	ip    map[string][]net.IP
	calls atomic.Int32
}

func (r *fakeResolver) LookupMX(_ context.Context, d string) ([]*net.MX, error) {
	r.calls.Add(1)
	if mx, ok := r.mx[d]; ok {
		return mx, nil
	}
	if _, ok := r.ip[d]; ok {
		return nil, nil
	}
	return nil, ErrNotFound
}

func (r *fakeResolver) LookupIP(_ context.Context, h string) ([]net.IP, error) {
	r.calls.Add(1)
	if ips, ok := r.ip[strings.TrimSuffix(h, ".")]; ok {
		return ips, nil
	}
	return nil, ErrNotFound
}

func TestMXOrder(t *testing.T) {
	t.Parallel()
	res := &fakeResolver{mx: map[string][]*net.MX{
		"eq.test": {
			{Host: "c.eq.test.", Pref: 20}, {Host: "a.eq.test.", Pref: 10},
			{Host: "b.eq.test.", Pref: 10}, {Host: "A.EQ.TEST.", Pref: 30},
		},
		"mixednull.test":     {{Host: ".", Pref: 0}, {Host: "mx.mixednull.test.", Pref: 10}},
		"idn.test":           {{Host: "mx.idn.test.", Pref: 10}},
		"xn--bcher-kva.test": {{Host: "mx.xn--bcher-kva.test.", Pref: 10}},
	}}
	c := New(Config{Resolver: res})
	hosts := func(domain string) []string {
		d := &delivery{Client: c, domain: domain}
		h, _, stop := d.mxHosts(t.Context())
		if stop != nil {
			t.Fatalf("%s: %v", domain, stop)
		}
		return h
	}
	seen := map[string]bool{}
	for range 200 {
		h := hosts("eq.test")
		if len(h) != 3 || h[2] != "c.eq.test" {
			t.Fatalf("hosts %q: want the two of preference 10, then c, duplicates dropped", h)
		}
		seen[h[0]] = true
	}
	if !seen["a.eq.test"] || !seen["b.eq.test"] {
		t.Errorf("equal preferences not shuffled: first hosts seen %v", seen)
	}
	if h := hosts("mixednull.test"); !slices.Equal(h, []string{"mx.mixednull.test"}) {
		t.Errorf("null MX beside others: hosts %q", h)
	}
	if h := hosts("bücher.test"); !slices.Equal(h, []string{"mx.xn--bcher-kva.test"}) {
		t.Errorf("IDN domain: hosts %q", h)
	}
}

func TestAddressLimit(t *testing.T) {
	t.Parallel()
	res := &fakeResolver{mx: map[string][]*net.MX{}, ip: map[string][]net.IP{}}
	for i := range 15 {
		h := "mx" + string(rune('a'+i)) + ".many.test"
		res.mx["many.test"] = append(res.mx["many.test"], &net.MX{Host: h + ".", Pref: uint16(i)})
		res.ip[h] = []net.IP{net.IPv4(192, 0, 2, byte(i+1))}
	}
	var dials atomic.Int32
	c := New(Config{Resolver: res, Dial: func(context.Context, string, string) (net.Conn, error) {
		dials.Add(1)
		return nil, errors.New("unreachable")
	}})
	got := c.Deliver(t.Context(), "many.test", "", []string{"u@many.test"}, []byte(testBody))
	if n := dials.Load(); n != maxAddresses {
		t.Errorf("%d connection attempts, want %d", n, maxAddresses)
	}
	checkResults(t, got, []string{"u@many.test"}, []want{{Deferred, "451 4.4.1 cannot connect to mxj.many.test [192.0.2.10]: unreachable", "", false}})
}

func TestBadSender(t *testing.T) {
	t.Parallel()
	res := &fakeResolver{}
	c := New(Config{Resolver: res})
	got := c.Deliver(t.Context(), "x.test", "a@b\r\nRCPT TO:<victim@x.test>", []string{"u@x.test", "v@x.test"}, []byte(testBody))
	checkResults(t, got, []string{"u@x.test", "v@x.test"}, []want{{Failed, "553 5.1.7 ", "", false}, {Failed, "553 5.1.7 ", "", false}})
	if n := res.calls.Load(); n != 0 {
		t.Errorf("%d DNS lookups for a message that cannot go", n)
	}
}

func TestAddressOrder(t *testing.T) {
	t.Parallel()
	res := &fakeResolver{
		mx: map[string][]*net.MX{"order.test": {{Host: "b.order.test.", Pref: 20}, {Host: "a.order.test.", Pref: 10}}},
		ip: map[string][]net.IP{
			"a.order.test": {net.ParseIP("192.0.2.1"), net.ParseIP("2001:db8::1")},
			"b.order.test": {net.ParseIP("192.0.2.1"), net.ParseIP("192.0.2.2")},
		},
	}
	var (
		mu     sync.Mutex
		dialed []string
	)
	c := New(Config{Resolver: res, Dial: func(_ context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		dialed = append(dialed, network+" "+addr)
		return nil, syscall.ECONNREFUSED
	}})
	got := c.Deliver(t.Context(), "order.test", "", []string{"u@order.test"}, []byte(testBody))
	// Port 25 by default; IPv6 too; an address shared by two hosts once.
	wantDials := []string{"tcp 192.0.2.1:25", "tcp [2001:db8::1]:25", "tcp 192.0.2.2:25"}
	if !slices.Equal(dialed, wantDials) {
		t.Errorf("dialed %q, want %q", dialed, wantDials)
	}
	checkResults(t, got, []string{"u@order.test"}, []want{{Deferred, "451 4.4.1 connection refused by b.order.test [192.0.2.2]", "", false}})
}
