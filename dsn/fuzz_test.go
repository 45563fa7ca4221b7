package dsn

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzBuild feeds hostile remote replies, remote MTA names and original
// messages to Build. Whatever they hold, the result must be a well-formed
// three-part multipart/report with one field group per recipient, the
// header fields we wrote and no others, and no line over 998 octets.
func FuzzBuild(f *testing.F) {
	f.Add("550 5.1.1 <bob@example.org>: no such user", "mx.example.org", []byte("From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"))
	f.Add("451-4.7.1 greylisted\r\n451 4.7.1 come back later", "", []byte("Subject: x\n\nLF only\n"))
	f.Add("550 x\r\nSubject: pwned\r\n\r\n--=_AAAA\r\n\x00\x00", "mx\r\nBcc: x", []byte("X: =_AAAA\r\n--=_AAAA--\r\n\r\n"))
	f.Add("550 5.7.1 Empfänger “unbekannt” \u202Eevil\xff", "mx.bücher.example", []byte("Subject: Grüße\xff\x00\r\n\rX: y\r\n\r\n"))
	f.Add(strings.Repeat("A", 5000), strings.Repeat("m", 300), []byte(strings.Repeat("x", 70000)))
	f.Add("", "", []byte(nil))

	f.Fuzz(func(t *testing.T, reply, remote string, original []byte) {
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		m := Message{
			ReportingMTA: "mx1.example.com",
			QueueID:      "01JABCDEFGHJKMNPQRSTVWXYZ0",
			Arrival:      now.Add(-time.Hour),
			To:           "alice@example.com",
			Now:          now,
			Original:     original,
			Recipients: []Recipient{
				{Final: "bob@example.org", Original: "b@example.org", Action: Failed, Reply: reply, RemoteMTA: remote, LastAttempt: now},
				{Final: "δοκιμή@παράδειγμα.δοκιμή", Action: Delayed, Reply: reply, RemoteMTA: remote, WillRetryUntil: now.Add(time.Hour)},
			},
		}
		raw, err := Build(m)
		if err != nil {
			t.Fatalf("Build: %v", err) // replies and originals must never make it fail
		}
		r, err := parseReport(raw) // checks lines, the three parts and their types
		if err != nil {
			t.Fatalf("parse: %v\n%q", err, raw)
		}

		wantHeader := []string{"Auto-Submitted", "Content-Type", "Date", "From", "Message-Id", "Mime-Version", "Subject", "To"}
		if got := slices.Sorted(maps.Keys(r.header)); !slices.Equal(got, wantHeader) {
			t.Fatalf("header fields %v, want %v", got, wantHeader)
		}
		if got := r.header.Get("Subject"); got != "Undelivered Mail Returned to Sender" {
			t.Fatalf("Subject = %q", got)
		}
		if len(r.perRecipient) != len(m.Recipients) {
			t.Fatalf("%d recipient groups, want %d", len(r.perRecipient), len(m.Recipients))
		}
		for i, h := range r.perRecipient {
			got, err := fields(h)
			if err != nil {
				t.Fatalf("recipient %d: %v", i, err)
			}
			for k := range got {
				switch k {
				case "Original-Recipient", "Final-Recipient", "Action", "Status", "Remote-Mta",
					"Diagnostic-Code", "Last-Attempt-Date", "Will-Retry-Until":
				default:
					t.Fatalf("recipient %d: unexpected field %s: %q", i, k, got[k])
				}
			}
			if want := string(m.Recipients[i].Action); got["Action"] != want {
				t.Fatalf("recipient %d: Action %q, want %q", i, got["Action"], want)
			}
			if !validStatus(got["Status"]) {
				t.Fatalf("recipient %d: Status %q", i, got["Status"])
			}
		}
		if len(r.parts[2].body) > 2*maxHeaderSection+2 {
			t.Fatalf("headers part of %d octets", len(r.parts[2].body))
		}
	})
}
