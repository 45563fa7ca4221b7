package dsn

import (
	"bytes"
	"fmt"
	"maps"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	testNow     = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	testArrival = testNow.Add(-4 * time.Hour)
	testHeaders = "Received: from client.example.com by mx1.example.com\r\n" +
		"From: Alice <alice@example.com>\r\n" +
		"To: bob@example.org\r\n" +
		"Subject: lunch?\r\n" +
		"Message-ID: <1@example.com>\r\n"
	testOriginal = []byte(testHeaders + "\r\nAre you free at noon?\r\n")
)

func testMessage(rs ...Recipient) Message {
	return Message{
		ReportingMTA: "mx1.example.com",
		QueueID:      "01JABCDEFGHJKMNPQRSTVWXYZ0",
		Arrival:      testArrival,
		To:           "alice@example.com",
		Recipients:   rs,
		Original:     testOriginal,
		Now:          testNow,
	}
}

func date(t time.Time) string { return t.Format("Mon, 02 Jan 2006 15:04:05 -0700") }

func TestBuild(t *testing.T) {
	failed := Recipient{
		Final:       "bob@example.org",
		Original:    "b.smith@example.org",
		Action:      Failed,
		Reply:       "550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
		RemoteMTA:   "mx.example.org",
		LastAttempt: testNow.Add(-time.Minute),
	}
	failedFields := map[string]string{
		"Original-Recipient": "rfc822; b.smith@example.org",
		"Final-Recipient":    "rfc822; bob@example.org",
		"Action":             "failed",
		"Status":             "5.1.1",
		"Remote-Mta":         "dns; mx.example.org",
		"Diagnostic-Code":    "smtp; 550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
		"Last-Attempt-Date":  date(testNow.Add(-time.Minute)),
	}
	delayed := Recipient{
		Final:          "carol@example.net",
		Original:       "carol@example.net", // same as Final: no Original-Recipient
		Action:         Delayed,
		Reply:          "connect to mx.example.net: connection timed out",
		LastAttempt:    testNow.Add(-2 * time.Minute),
		WillRetryUntil: testArrival.Add(5 * 24 * time.Hour),
	}
	delayedFields := map[string]string{
		"Final-Recipient":   "rfc822; carol@example.net",
		"Action":            "delayed",
		"Status":            "4.0.0",
		"Diagnostic-Code":   "X-Clustermail; connect to mx.example.net: connection timed out",
		"Last-Attempt-Date": date(testNow.Add(-2 * time.Minute)),
		"Will-Retry-Until":  date(testArrival.Add(5 * 24 * time.Hour)),
	}

	tests := []struct {
		name       string
		rcpts      []Recipient
		subject    string
		want       []map[string]string // per-recipient fields, exactly
		text       []string            // in the text part, unwrapped, in this order
		textLines  []string            // whole lines of the text part
		textAbsent []string
	}{
		{
			name:    "failure",
			rcpts:   []Recipient{failed},
			subject: "Undelivered Mail Returned to Sender",
			want:    []map[string]string{failedFields},
			text: []string{
				"This is the mail system at host mx1.example.com.",
				"could not be delivered",
				"Queue ID: 01JABCDEFGHJKMNPQRSTVWXYZ0",
				"Delivery failed for these recipients:",
				"<bob@example.org> (sent to <b.smith@example.org>):",
				"host mx.example.org said: 550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
				"Last attempt: " + date(testNow.Add(-time.Minute)),
			},
			textLines: []string{
				"<bob@example.org> (sent to <b.smith@example.org>):",
				"    host mx.example.org said: 550 5.1.1 <bob@example.org>: Recipient address",
				"    rejected: User unknown in virtual mailbox table",
				"    Last attempt: " + date(testNow.Add(-time.Minute)),
			},
			textAbsent: []string{"only a warning", "still being retried", "Will retry until"},
		},
		{
			name:    "delay",
			rcpts:   []Recipient{delayed},
			subject: "Delayed Mail (still being retried)",
			want:    []map[string]string{delayedFields},
			text: []string{
				"This is only a warning: you do not need to resend your message.",
				"It has been waiting for 4 hours.",
				"Delivery is still being retried for these recipients:",
				"<carol@example.net>:",
				"connect to mx.example.net: connection timed out",
				"Will retry until: " + date(testArrival.Add(5*24*time.Hour)),
			},
			textLines: []string{
				"This is only a warning: you do not need to resend your message.",
				"    connect to mx.example.net: connection timed out",
				"    Will retry until: " + date(testArrival.Add(5*24*time.Hour)),
			},
			textAbsent: []string{"Delivery failed", "sent to", "said:"},
		},
		{
			name:    "mixed",
			rcpts:   []Recipient{delayed, failed},
			subject: "Undelivered Mail Returned to Sender",
			want:    []map[string]string{delayedFields, failedFields},
			text: []string{
				"could not be delivered",
				"other recipients listed below is still being",
				"Delivery failed for these recipients:",
				"<bob@example.org>",
				"Delivery is still being retried for these recipients:",
				"<carol@example.net>",
			},
			textAbsent: []string{"only a warning"},
		},
		{
			name: "failure without remote MTA or original recipient",
			rcpts: []Recipient{{
				Final:  "dave@example.invalid",
				Action: Failed,
				Reply:  "Host or domain name not found. Name service error for name=example.invalid type=MX",
			}},
			subject: "Undelivered Mail Returned to Sender",
			want: []map[string]string{{
				"Final-Recipient": "rfc822; dave@example.invalid",
				"Action":          "failed",
				"Status":          "5.0.0",
				"Diagnostic-Code": "X-Clustermail; Host or domain name not found. Name service error for name=example.invalid type=MX",
			}},
			text:       []string{"<dave@example.invalid>:", "Host or domain name not found."},
			textAbsent: []string{"said:", "Last attempt"},
		},
		{
			name: "lifetime expired keeps the transient status",
			rcpts: []Recipient{{
				Final:     "erin@example.org",
				Action:    Failed,
				Reply:     "451 4.4.1 try again later",
				RemoteMTA: "mx2.example.org",
			}},
			subject: "Undelivered Mail Returned to Sender",
			want: []map[string]string{{
				"Final-Recipient": "rfc822; erin@example.org",
				"Action":          "failed",
				"Status":          "4.4.1",
				"Remote-Mta":      "dns; mx2.example.org",
				"Diagnostic-Code": "smtp; 451 4.4.1 try again later",
			}},
		},
		{
			name: "explicit status wins, contradicting reply ignored",
			rcpts: []Recipient{
				{Final: "f@example.org", Action: Failed, Status: "5.4.7", Reply: "451 4.4.1 timeout"},
				{Final: "g@example.org", Action: Failed, Reply: "250 2.0.0 ok"},
				{Final: "h@example.org", Action: Delayed, Reply: "550 5.1.1 unknown"},
			},
			subject: "Undelivered Mail Returned to Sender",
			want: []map[string]string{
				{"Final-Recipient": "rfc822; f@example.org", "Action": "failed", "Status": "5.4.7", "Diagnostic-Code": "smtp; 451 4.4.1 timeout"},
				{"Final-Recipient": "rfc822; g@example.org", "Action": "failed", "Status": "5.0.0", "Diagnostic-Code": "smtp; 250 2.0.0 ok"},
				{"Final-Recipient": "rfc822; h@example.org", "Action": "delayed", "Status": "4.0.0", "Diagnostic-Code": "smtp; 550 5.1.1 unknown"},
			},
		},
		{
			name: "success report",
			rcpts: []Recipient{
				{Final: "i@example.org", Action: Delivered, Reply: "250 2.0.0 delivered to mailbox"},
				{Final: "j@example.org", Action: Relayed, RemoteMTA: "mx.example.org", Reply: "250 2.0.0 Ok: queued as ABC"},
			},
			subject: "Successful Mail Delivery Report",
			want: []map[string]string{
				{"Final-Recipient": "rfc822; i@example.org", "Action": "delivered", "Status": "2.0.0", "Diagnostic-Code": "smtp; 250 2.0.0 delivered to mailbox"},
				{"Final-Recipient": "rfc822; j@example.org", "Action": "relayed", "Status": "2.0.0", "Remote-Mta": "dns; mx.example.org", "Diagnostic-Code": "smtp; 250 2.0.0 Ok: queued as ABC"},
			},
			text: []string{"delivered to these recipients:", "<i@example.org>", "relayed to these recipients", "<j@example.org>"},
		},
		{
			name: "non-ASCII addresses and reply",
			rcpts: []Recipient{{
				Final:     "δοκιμή@παράδειγμα.δοκιμή",
				Original:  "user+tag@bücher.example",
				Action:    Failed,
				Reply:     "550 5.1.1 Empfänger unbekannt – “δοκιμή”",
				RemoteMTA: "mx.xn--bcher-kva.example",
			}},
			subject: "Undelivered Mail Returned to Sender",
			want: []map[string]string{{
				"Original-Recipient": `utf-8; user\x{2B}tag@b\x{FC}cher.example`,
				"Final-Recipient":    `utf-8; \x{3B4}\x{3BF}\x{3BA}\x{3B9}\x{3BC}\x{3AE}@\x{3C0}\x{3B1}\x{3C1}\x{3AC}\x{3B4}\x{3B5}\x{3B9}\x{3B3}\x{3BC}\x{3B1}.\x{3B4}\x{3BF}\x{3BA}\x{3B9}\x{3BC}\x{3AE}`,
				"Action":             "failed",
				"Status":             "5.1.1",
				"Remote-Mta":         "dns; mx.xn--bcher-kva.example",
				"Diagnostic-Code":    "smtp; 550 5.1.1 Empf?nger unbekannt ? ????????",
			}},
			text: []string{
				"<δοκιμή@παράδειγμα.δοκιμή> (sent to <user+tag@bücher.example>):",
				"said: 550 5.1.1 Empfänger unbekannt – “δοκιμή”",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testMessage(tt.rcpts...)
			raw, err := Build(m)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			r, err := parseReport(raw)
			if err != nil {
				t.Fatalf("parse: %v\n%s", err, raw)
			}

			checkEnvelope(t, r, m, tt.subject)

			wantMsg := map[string]string{
				"Reporting-Mta":          "dns; mx1.example.com",
				"X-Clustermail-Queue-Id": m.QueueID,
				"Arrival-Date":           date(testArrival),
			}
			gotMsg, err := fields(r.perMessage)
			if err != nil {
				t.Fatalf("per-message fields: %v", err)
			}
			if !maps.Equal(gotMsg, wantMsg) {
				t.Errorf("per-message fields\n got %v\nwant %v", gotMsg, wantMsg)
			}
			// Fields in the order of RFC 3464's grammar.
			order := []string{"Reporting-MTA", "Arrival-Date", "X-Clustermail-Queue-ID", "",
				"Original-Recipient", "Final-Recipient", "Action", "Status", "Remote-MTA",
				"Diagnostic-Code", "Last-Attempt-Date", "Will-Retry-Until", ""}
			next := 0
			for _, l := range strings.Split(string(r.parts[1].body), "\r\n") {
				if strings.HasPrefix(l, " ") {
					continue // continuation
				}
				name, _, _ := strings.Cut(l, ":")
				if name == "" && next > 3 {
					next = 4 // the next recipient's group
					continue
				}
				i := slices.Index(order[next:], name)
				if i < 0 {
					t.Errorf("field %q out of order in delivery-status:\n%s", name, r.parts[1].body)
					break
				}
				next += i + 1
			}
			if len(r.perRecipient) != len(tt.want) {
				t.Fatalf("%d recipient groups, want %d", len(r.perRecipient), len(tt.want))
			}
			for i, want := range tt.want {
				got, err := fields(r.perRecipient[i])
				if err != nil {
					t.Fatalf("recipient %d: %v", i, err)
				}
				for _, k := range slices.Sorted(maps.Keys(got)) {
					if got[k] != want[k] {
						t.Errorf("recipient %d %s = %q, want %q", i, k, got[k], want[k])
					}
				}
				for _, k := range slices.Sorted(maps.Keys(want)) {
					if _, ok := got[k]; !ok {
						t.Errorf("recipient %d: %s missing", i, k)
					}
				}
			}

			text := string(r.parts[0].body)
			lines := strings.Split(text, "\r\n")
			unwrapped := strings.Join(strings.Fields(text), " ")
			pos := 0
			for _, s := range tt.text {
				i := strings.Index(unwrapped[pos:], s)
				if i < 0 {
					t.Errorf("text part lacks %q after offset %d:\n%s", s, pos, text)
					continue
				}
				pos += i + len(s)
			}
			for _, l := range tt.textLines {
				if !slices.Contains(lines, l) {
					t.Errorf("text part lacks line %q:\n%s", l, text)
				}
			}
			for _, s := range tt.textAbsent {
				if strings.Contains(unwrapped, s) {
					t.Errorf("text part contains %q:\n%s", s, text)
				}
			}
			for _, l := range lines {
				if n := len([]rune(l)); n > textWidth {
					t.Errorf("text line of %d characters: %q", n, l)
				}
			}

			if got := string(r.parts[2].body); got != testHeaders {
				t.Errorf("headers part\n got %q\nwant %q", got, testHeaders)
			}
		})
	}
}

// checkEnvelope checks the top-level header and the parts' headers.
func checkEnvelope(t *testing.T, r *report, m Message, subject string) {
	t.Helper()
	h := r.header
	for _, k := range []string{"From", "To", "Subject", "Date", "Message-Id", "Auto-Submitted", "Mime-Version", "Content-Type"} {
		if n := len(h[k]); n != 1 {
			t.Errorf("header %s occurs %d times", k, n)
		}
	}
	if n := len(h); n != 8 {
		t.Errorf("%d header fields, want 8: %v", n, h)
	}
	from, err := mail.ParseAddress(h.Get("From"))
	if err != nil || from.Name != "Mail Delivery System" || from.Address != "MAILER-DAEMON@"+m.ReportingMTA {
		t.Errorf("From = %q (%v)", h.Get("From"), err)
	}
	to, err := mail.ParseAddress(h.Get("To"))
	if err != nil || to.Address != m.To {
		t.Errorf("To = %q (%v), want %s", h.Get("To"), err, m.To)
	}
	if got := h.Get("Subject"); got != subject {
		t.Errorf("Subject = %q, want %q", got, subject)
	}
	if d, err := h.Date(); err != nil || !d.Equal(m.Now) {
		t.Errorf("Date = %q (%v), want %v", h.Get("Date"), err, m.Now)
	}
	if id := h.Get("Message-Id"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@"+m.ReportingMTA+">") || len(id) < 20 {
		t.Errorf("Message-ID = %q", id)
	}
	if got := h.Get("Auto-Submitted"); got != "auto-replied" {
		t.Errorf("Auto-Submitted = %q", got)
	}
	if got := h.Get("Mime-Version"); got != "1.0" {
		t.Errorf("MIME-Version = %q", got)
	}
	if !strings.HasPrefix(r.boundary, "=_") || len(r.boundary) < 20 {
		t.Errorf("boundary %q", r.boundary)
	}
	if ct := r.parts[0].header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("text part Content-Type = %q", ct)
	}
}

func TestBuildHostileReply(t *testing.T) {
	reply := "550 5.7.1 go away\r\nSubject: pwned\r\nBcc: victim@example.net\r\n\r\n" +
		"--=_FAKE\r\nContent-Type: text/html\r\n\r\n<script>\x00\x00\x1b[31m\u202Egnp.exe\x7f\u0085" +
		strings.Repeat("A", 3000) + " " + strings.Repeat("word ", 1500)
	if len(reply) < 10000 {
		t.Fatalf("reply only %d octets", len(reply))
	}
	m := testMessage(Recipient{Final: "bob@example.org", Action: Failed, Reply: reply, RemoteMTA: "mx\r\nSubject: evil\x00.example.org"})
	raw, err := Build(m)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	r, err := parseReport(raw)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	checkEnvelope(t, r, m, "Undelivered Mail Returned to Sender")

	// Nothing in the reply may start a line of its own: every line that
	// looks like a field or a boundary is one we wrote.
	for _, l := range strings.Split(string(raw), "\r\n") {
		for _, bad := range []string{"Subject: pwned", "Subject: evil", "Bcc:", "Content-Type: text/html", "--=_FAKE", "<script>"} {
			if strings.HasPrefix(l, bad) {
				t.Errorf("line starts with %q: %.60q", bad, l)
			}
		}
		if strings.HasPrefix(l, "--") && l != "--"+r.boundary && l != "--"+r.boundary+"--" {
			t.Errorf("line looks like a boundary: %.60q", l)
		}
	}
	if bytes.ContainsAny(raw, "\x00\x1b\x7f") || bytes.Contains(raw, []byte("\u202E")) {
		t.Error("control characters reached the output")
	}

	if len(r.perRecipient) != 1 {
		t.Fatalf("%d recipient groups, want 1", len(r.perRecipient))
	}
	got, err := fields(r.perRecipient[0])
	if err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{"Action", "Diagnostic-Code", "Final-Recipient", "Remote-Mta", "Status"}
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, wantKeys) {
		t.Errorf("recipient fields %v, want %v", keys, wantKeys)
	}
	diag := got["Diagnostic-Code"]
	wantStart := "smtp; 550 5.7.1 go away Subject: pwned Bcc: victim@example.net --=_FAKE Content-Type: text/html <script>[31mgnp.exe AAAA"
	if !strings.HasPrefix(diag, wantStart) {
		t.Errorf("Diagnostic-Code starts %.140q, want %q", diag, wantStart)
	}
	if !strings.HasSuffix(diag, "...") || len(diag) > len("smtp; ")+maxReply+10 {
		t.Errorf("Diagnostic-Code of %d octets not capped: ...%q", len(diag), diag[len(diag)-20:])
	}
	if got["Remote-Mta"] != "dns; mx Subject: evil.example.org" {
		t.Errorf("Remote-MTA = %q", got["Remote-Mta"])
	}
	if got["Status"] != "5.7.1" {
		t.Errorf("Status = %q", got["Status"])
	}
}

func TestBuildBoundaryCollision(t *testing.T) {
	saved := newBoundaryToken
	t.Cleanup(func() { newBoundaryToken = saved })
	fake := func(tokens ...string) {
		i := 0
		newBoundaryToken = func() string {
			s := tokens[i%len(tokens)]
			i++
			return s
		}
	}

	// The reply quotes the first two candidates, the second in lower case.
	m := testMessage(Recipient{Final: "bob@example.org", Action: Failed, Reply: "550 see --=_COLLIDE and =_lower"})
	fake("COLLIDE", "LOWER", "FRESH")
	raw, err := Build(m)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	r, err := parseReport(raw)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if r.boundary != "=_FRESH" {
		t.Errorf("boundary %q, want =_FRESH", r.boundary)
	}

	// In the original's headers too.
	m = testMessage(Recipient{Final: "bob@example.org", Action: Failed})
	m.Original = []byte("X-Trap: =_COLLIDE\r\n\r\nbody")
	fake("COLLIDE", "FRESH")
	if raw, err = Build(m); err != nil {
		t.Fatalf("Build: %v", err)
	}
	if r, err = parseReport(raw); err != nil || r.boundary != "=_FRESH" {
		t.Errorf("boundary %q (%v), want =_FRESH", r.boundary, err)
	}

	fake("COLLIDE")
	if _, err := Build(m); err == nil || !strings.Contains(err.Error(), "boundary") {
		t.Errorf("Build with only colliding boundaries: err = %v, want a boundary error", err)
	}
}

func TestBuildHeaderSection(t *testing.T) {
	var fields strings.Builder
	for i := 0; fields.Len() < 100<<10; i++ {
		fmt.Fprintf(&fields, "X-Filler-%05d: %s\r\n", i, strings.Repeat("f", 40))
	}
	manyFields := fields.String()
	// Where the last whole field that fits ends.
	fieldCut := strings.LastIndex(manyFields[:maxHeaderSection+1], "\r\nX-") + 2

	giantField := "Received: from a\r\n" + strings.Repeat(" "+strings.Repeat("r", 98)+"\r\n", 1000) + "Subject: x\r\n"
	lineCut := strings.LastIndex(giantField[:maxHeaderSection+1], "\r\n") + 2

	giantLine := strings.Repeat("x", 100<<10)

	var exactB strings.Builder
	for i := range maxHeaderSection / 64 {
		fmt.Fprintf(&exactB, "X-F-%04d: %s\r\n", i, strings.Repeat("e", 52))
	}
	exact := exactB.String()
	if len(exact) != maxHeaderSection {
		t.Fatalf("exact is %d octets", len(exact))
	}

	tests := []struct {
		name      string
		original  string
		want      string // decoded text/rfc822-headers body
		cte       string
		charset   string
		truncated bool
	}{
		{"plain", "A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore", "A: 1\r\nB: 2\r\n", "7bit", "", false},
		{"LF line endings", "A: 1\nB: 2\n\nbody", "A: 1\r\nB: 2\r\n", "7bit", "", false},
		{"no body", "A: 1\r\nB: 2", "A: 1\r\nB: 2\r\n", "7bit", "", false},
		{"empty", "", "", "", "", false},
		{"body only", "\r\nbody\r\n", "", "", "", false},
		{"UTF-8 headers", "Subject: Grüße\r\n\r\nx", "Subject: Grüße\r\n", "quoted-printable", "utf-8", false},
		{"8-bit junk and NUL", "Subject: \xff\x00\r\n\r\nx", "Subject: \xff\x00\r\n", "quoted-printable", "unknown-8bit", false},
		{"bare CR becomes a line break", "A: 1\rB: 2\r\n\r\n", "A: 1\r\nB: 2\r\n", "quoted-printable", "utf-8", false},
		{"exactly 64 KiB", exact + "\r\nbody", exact, "7bit", "", false},
		{"many fields cut at a field boundary", manyFields + "\r\nbody", manyFields[:fieldCut], "7bit", "", true},
		{"one giant field cut at a line boundary", giantField + "\r\nbody", giantField[:lineCut], "7bit", "", true},
		{"one giant line cut at 64 KiB", giantLine, giantLine[:maxHeaderSection] + "\r\n", "quoted-printable", "utf-8", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testMessage(Recipient{Final: "bob@example.org", Action: Failed, Reply: "550 no"})
			m.Original = []byte(tt.original)
			raw, err := Build(m)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			r, err := parseReport(raw)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			p := r.parts[2]
			if got := string(p.body); got != tt.want {
				t.Errorf("headers part: got %d octets %.80q..., want %d octets %.80q...", len(got), got, len(tt.want), tt.want)
			}
			if len(p.body) > maxHeaderSection+2 {
				t.Errorf("headers part of %d octets", len(p.body))
			}
			if got := strings.ToLower(p.header.Get("Content-Transfer-Encoding")); got != tt.cte {
				t.Errorf("Content-Transfer-Encoding = %q, want %q", got, tt.cte)
			}
			wantCT := "text/rfc822-headers"
			if tt.charset != "" {
				wantCT += "; charset=" + tt.charset
			}
			if got := p.header.Get("Content-Type"); got != wantCT {
				t.Errorf("Content-Type = %q, want %q", got, wantCT)
			}
			if got := strings.Contains(string(r.parts[0].body), "cut short at 64 KiB"); got != tt.truncated {
				t.Errorf("text mentions truncation: %v, want %v", got, tt.truncated)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	ok := Recipient{Final: "bob@example.org", Action: Failed}
	tests := []struct {
		name string
		edit func(*Message)
		want string
	}{
		{"null sender", func(m *Message) { m.To = "" }, "null sender"},
		{"no recipients", func(m *Message) { m.Recipients = nil }, "no recipients"},
		{"no reporting MTA", func(m *Message) { m.ReportingMTA = "" }, "reporting MTA"},
		{"reporting MTA with CRLF", func(m *Message) { m.ReportingMTA = "mx\r\nBcc: x" }, "reporting MTA"},
		{"reporting MTA in Unicode", func(m *Message) { m.ReportingMTA = "mx.bücher.example" }, "A-label"},
		{"sender with LF", func(m *Message) { m.To = "a@b\nBcc: x@y" }, "envelope sender"},
		{"sender too long", func(m *Message) { m.To = strings.Repeat("a", 1000) + "@b" }, "envelope sender"},
		{"queue id with space", func(m *Message) { m.QueueID = "a b" }, "queue id"},
		{"unknown action", func(m *Message) { m.Recipients[0].Action = "bounced" }, `unknown action "bounced"`},
		{"empty final", func(m *Message) { m.Recipients[0].Final = "" }, "final recipient"},
		{"final with CR", func(m *Message) { m.Recipients[0].Final = "a\r@b" }, "control character"},
		{"original with NUL", func(m *Message) { m.Recipients[0].Original = "a\x00@b" }, "original recipient"},
		{"invalid UTF-8 final", func(m *Message) { m.Recipients[0].Final = "a\xff@b" }, "UTF-8"},
		{"final encodes too long", func(m *Message) { m.Recipients[0].Final = strings.Repeat("+", 200) + "@ü" }, "encodes to"},
		{"malformed status", func(m *Message) { m.Recipients[0].Status = "550" }, "malformed status"},
		{"status of class 3", func(m *Message) { m.Recipients[0].Status = "3.0.0" }, "malformed status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testMessage(ok)
			tt.edit(&m)
			_, err := Build(m)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestBuildDefaults(t *testing.T) {
	// Zero Now, Arrival and QueueID; no Original. Fields are omitted, Date
	// is the current time.
	m := Message{ReportingMTA: "mx1.example.com", To: "alice@example.com", Recipients: []Recipient{{Final: "bob@example.org", Action: Delayed}}}
	before := time.Now().Truncate(time.Second)
	raw, err := Build(m)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	r, err := parseReport(raw)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if d, err := r.header.Date(); err != nil || d.Before(before) || d.After(time.Now()) {
		t.Errorf("Date = %q (%v), want about now", r.header.Get("Date"), err)
	}
	got, _ := fields(r.perMessage)
	if want := map[string]string{"Reporting-Mta": "dns; mx1.example.com"}; !maps.Equal(got, want) {
		t.Errorf("per-message fields %v, want %v", got, want)
	}
	got, _ = fields(r.perRecipient[0])
	if want := map[string]string{"Final-Recipient": "rfc822; bob@example.org", "Action": "delayed", "Status": "4.0.0"}; !maps.Equal(got, want) {
		t.Errorf("recipient fields %v, want %v", got, want)
	}
	if len(r.parts[2].body) != 0 {
		t.Errorf("headers part %q, want empty", r.parts[2].body)
	}
	if text := string(r.parts[0].body); strings.Contains(text, "waiting for") || strings.Contains(text, "Queue ID") {
		t.Errorf("text part mentions unknown facts:\n%s", text)
	}
}

func TestWriteField(t *testing.T) {
	tests := []struct {
		name, value, want string
	}{
		{"Short", "a b c", "Short: a b c\r\n"},
		{"Fold", strings.Repeat("word ", 20) + "end",
			"Fold: word word word word word word word word word word word word word word\r\n" +
				" word word word word word word end\r\n"},
		{"Long", strings.Repeat("x", 1000),
			"Long: " + strings.Repeat("x", maxWord) + "\r\n " + strings.Repeat("x", 100) + "\r\n"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		writeField(&b, tt.name, tt.value)
		if got := b.String(); got != tt.want {
			t.Errorf("writeField(%q, %.20q)\n got %q\nwant %q", tt.name, tt.value, got, tt.want)
		}
	}
}

func TestClean(t *testing.T) {
	tests := []struct {
		in    string
		limit int
		want  string
	}{
		{"550 ok", 100, "550 ok"},
		{"  550\r\n550 \t more  ", 100, "550 550 more"},
		{"a\x00b\x1bc\x7fd", 100, "abcd"},
		{"line\u2028sep\u0085nel", 100, "line sep nel"},
		{"\u202Eevil\u2066", 100, "evil"},
		{"bad \xff utf8", 100, "bad \uFFFD utf8"},
		{"Grüße", 100, "Grüße"},
		{strings.Repeat("y", 20), 10, strings.Repeat("y", 7) + "..."},
		{"ääää", 8, "ää..."}, // never splits a character
	}
	for _, tt := range tests {
		if got := clean(tt.in, tt.limit); got != tt.want {
			t.Errorf("clean(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
		}
	}
}

func TestWrap(t *testing.T) {
	tests := []struct {
		s, indent string
		width     int
		want      []string
	}{
		{"a b c", "", 10, []string{"a b c"}},
		{"aaa bbb ccc", "  ", 9, []string{"  aaa bbb", "  ccc"}},
		{"äöü äöü", "", 3, []string{"äöü", "äöü"}},
		{"abcdefgh", "  ", 5, []string{"  abc", "  def", "  gh"}},
		{"", "  ", 5, nil},
	}
	for _, tt := range tests {
		if got := wrap(tt.s, tt.indent, tt.width); !slices.Equal(got, tt.want) {
			t.Errorf("wrap(%q, %q, %d) = %q, want %q", tt.s, tt.indent, tt.width, got, tt.want)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{10 * time.Second, "1 minute"},
		{35 * time.Minute, "35 minutes"},
		{time.Hour, "1 hour"},
		{4*time.Hour + 20*time.Minute, "4 hours"},
		{47 * time.Hour, "47 hours"},
		{5 * 24 * time.Hour, "5 days"},
	}
	for _, tt := range tests {
		if got := humanDuration(tt.d); got != tt.want {
			t.Errorf("humanDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
