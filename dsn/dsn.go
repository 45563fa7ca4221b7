// Package dsn renders delivery status notifications: the delay notices and
// bounces the queue sends to a message's envelope sender (RFC 3464 fields,
// RFC 3461 semantics, RFC 6522 multipart/report, RFC 6533 UTF-8 addresses).
//
// The output is always a three-part multipart/report: a friendly text/plain
// explanation, a machine-readable message/delivery-status, and the header
// section of the original message as text/rfc822-headers. Remote SMTP
// replies are treated as hostile input: they are cleaned of control
// characters, folded and length-capped, so they cannot add header fields,
// end a MIME part, or produce lines longer than RFC 5322 allows.
//
// Build only renders. Deciding whether to notify (never for the null
// sender, RFC 3461 NOTIFY) and sending with the null reverse path
// (MAIL FROM:<>, so a bounce cannot bounce) is the queue's job.
package dsn

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"mime/multipart"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"
)

// Action is the per-recipient Action field of RFC 3464 section 2.3.3.
type Action string

// The actions of RFC 3464. The queue sends Failed and Delayed; the others
// are rendered correctly too, for a future NOTIFY=SUCCESS.
const (
	Failed    Action = "failed"    // gave up: permanent failure or queue lifetime exceeded
	Delayed   Action = "delayed"   // still retrying
	Delivered Action = "delivered" // delivered to the recipient's mailbox
	Relayed   Action = "relayed"   // handed to a system that sends no DSNs
	Expanded  Action = "expanded"  // delivered, then forwarded to several addresses
)

// Recipient is what the report says about one recipient.
type Recipient struct {
	Final          string    // final recipient address, as delivered to
	Original       string    // original recipient as given at RCPT; "" (or equal to Final) omits Original-Recipient
	Action         Action    // what happened
	Status         string    // enhanced status code ("5.1.1"); "" derives it from Reply and Action
	Reply          string    // the remote server's reply or our own diagnostic; untrusted, cleaned before use
	RemoteMTA      string    // the host that gave Reply; "" omits Remote-MTA (the reply is our own)
	LastAttempt    time.Time // zero omits Last-Attempt-Date
	WillRetryUntil time.Time // when we give up; rendered for Delayed only, zero omits it
}

// Message is one notification to one envelope sender.
type Message struct {
	ReportingMTA string      // our host name (ASCII), for Reporting-MTA, From and Message-ID
	QueueID      string      // queue id of the original, as X-Clustermail-Queue-ID; "" omits it
	Arrival      time.Time   // when we accepted the original; zero omits Arrival-Date
	To           string      // the original envelope sender, who receives this; must not be ""
	Recipients   []Recipient // at least one
	Original     []byte      // the original message; only its header section is attached
	Now          time.Time   // for the Date header; zero means time.Now()
}

const (
	// maxHeaderSection caps the attached original header section: a DSN
	// must stay small and deliverable even for a message built to be huge.
	maxHeaderSection = 64 << 10

	// maxReply caps a cleaned reply. RFC 5321 replies are at most a few
	// lines of 512 octets; anything far beyond is noise or an attack.
	maxReply = 4 << 10

	// maxAddress caps an address in its encoded form, so that every field
	// holding one fits in a 998-octet line without folding inside it.
	maxAddress = 900

	// queueIDHeader names the per-message extension field carrying our
	// queue id, like Postfix's X-Postfix-Queue-ID, so the sender's support
	// desk can find the message in our logs.
	queueIDHeader = "X-Clustermail-Queue-ID"

	// dateLayout is the RFC 5322 date-time format.
	dateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"
)

// newBoundaryToken supplies the random part of MIME boundaries; tests swap
// it to force collisions.
var newBoundaryToken = rand.Text

// Build renders m as a complete RFC 5322 message with CRLF line endings,
// ready to be sent with MAIL FROM:<> to m.To.
//
// The Subject says "Undelivered Mail Returned to Sender" when any recipient
// failed, "Delayed Mail (still being retried)" when the rest are delayed, and
// "Successful Mail Delivery Report" otherwise. The message has exactly three
// parts: text/plain, message/delivery-status with one field group per
// recipient in m.Recipients order, and text/rfc822-headers with the header
// section of m.Original (cut at a field boundary if larger than 64 KiB;
// empty if m.Original is empty).
//
// Non-ASCII text from replies is kept in the text part (UTF-8, sent
// quoted-printable so no 8BITMIME is needed) and replaced by '?' in the
// delivery-status part, which RFC 3464 keeps 7-bit. Non-ASCII addresses use
// the RFC 6533 "utf-8" address type in its 7-bit utf-8-addr-xtext form.
//
// Build fails on inputs that come from our own configuration or queue and
// cannot be rendered safely (empty To, no recipients, an unknown Action, a
// malformed host name, queue id, address or Status); replies and the
// original message never make it fail.
func Build(m Message) ([]byte, error) {
	rcpts, err := prepare(m)
	if err != nil {
		return nil, err
	}
	now := m.Now
	if now.IsZero() {
		now = time.Now()
	}
	headers, truncated := headerSection(m.Original)

	text := textPart(m, rcpts, now, truncated)
	status := statusPart(m, rcpts)
	orig := headersPart(headers)
	parts := []part{text, status, orig}

	boundary, err := pickBoundary(parts)
	if err != nil {
		return nil, err
	}

	var b bytes.Buffer
	writeField(&b, "From", "Mail Delivery System <MAILER-DAEMON@"+m.ReportingMTA+">")
	// Unfolded, like the address fields of the report: checkAddress keeps
	// it short enough for one line.
	b.WriteString("To: <" + m.To + ">\r\n")
	writeField(&b, "Subject", subject(rcpts))
	writeField(&b, "Date", now.Format(dateLayout))
	writeField(&b, "Message-ID", "<"+strings.ToLower(rand.Text())+"@"+m.ReportingMTA+">")
	// RFC 3834: marks the message as automatic, so vacation responders
	// and other robots do not answer it.
	writeField(&b, "Auto-Submitted", "auto-replied")
	writeField(&b, "MIME-Version", "1.0")
	// Written by hand rather than with mime.FormatMediaType to keep
	// report-type first and the line under 78 columns.
	b.WriteString("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"" + boundary + "\"\r\n")
	b.WriteString("\r\n")
	// A preamble for the rare reader that does not understand MIME.
	b.WriteString("This is a delivery status notification in MIME format.\r\n\r\n")

	mw := multipart.NewWriter(&b)
	if err := mw.SetBoundary(boundary); err != nil {
		return nil, fmt.Errorf("dsn: set boundary %q: %w", boundary, err)
	}
	for _, p := range parts {
		w, err := mw.CreatePart(p.header)
		if err != nil {
			return nil, fmt.Errorf("dsn: create %s part: %w", p.header.Get("Content-Type"), err)
		}
		if _, err := w.Write(p.body); err != nil {
			return nil, fmt.Errorf("dsn: write %s part: %w", p.header.Get("Content-Type"), err)
		}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("dsn: close multipart: %w", err)
	}

	out := b.Bytes()
	// The pieces above are each built to be safe; this catches a bug in
	// any of them before a malformed message reaches the wire.
	if err := checkWire(out); err != nil {
		return nil, fmt.Errorf("dsn: internal error: %w", err)
	}
	return out, nil
}

// rcpt is a Recipient after validation and cleaning, with every value
// ready to render.
type rcpt struct {
	Recipient
	status     string // enhanced status code
	reply      string // cleaned reply, UTF-8, for the text part
	remoteMTA  string // cleaned remote MTA, UTF-8, for the text part
	finalAddr  string // "rfc822; addr" or "utf-8; xtext"
	origAddr   string // same for Original, "" to omit
	diagnostic string // "smtp; ..." or "X-Clustermail; ...", ASCII, "" to omit
}

// prepare validates m and computes each recipient's rendered values.
func prepare(m Message) ([]rcpt, error) {
	if err := checkHost(m.ReportingMTA); err != nil {
		return nil, fmt.Errorf("dsn: reporting MTA: %w", err)
	}
	if m.To == "" {
		return nil, errors.New("dsn: no envelope sender to notify (the null sender never gets a DSN)")
	}
	if err := checkAddress(m.To); err != nil {
		return nil, fmt.Errorf("dsn: envelope sender %q: %w", m.To, err)
	}
	if err := checkQueueID(m.QueueID); err != nil {
		return nil, fmt.Errorf("dsn: queue id %q: %w", m.QueueID, err)
	}
	if len(m.Recipients) == 0 {
		return nil, errors.New("dsn: no recipients to report")
	}
	out := make([]rcpt, 0, len(m.Recipients))
	for i, r := range m.Recipients {
		p, err := prepareRecipient(r)
		if err != nil {
			return nil, fmt.Errorf("dsn: recipient %d (%q): %w", i, r.Final, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func prepareRecipient(r Recipient) (rcpt, error) {
	p := rcpt{Recipient: r}
	var def string
	var classes string // status classes consistent with the action
	switch r.Action {
	case Failed:
		// 4.x.x fits too: RFC 3463 allows a persistent transient failure
		// to end in abandonment, which is how a queue lifetime expires.
		def, classes = "5.0.0", "45"
	case Delayed:
		def, classes = "4.0.0", "4"
	case Delivered, Relayed, Expanded:
		def, classes = "2.0.0", "2"
	default:
		return p, fmt.Errorf("unknown action %q", r.Action)
	}

	var err error
	if p.finalAddr, err = typedAddress(r.Final); err != nil {
		return p, fmt.Errorf("final recipient: %w", err)
	}
	if r.Original != "" && r.Original != r.Final {
		if p.origAddr, err = typedAddress(r.Original); err != nil {
			return p, fmt.Errorf("original recipient %q: %w", r.Original, err)
		}
	}

	p.reply = clean(r.Reply, maxReply)
	p.remoteMTA = clean(r.RemoteMTA, 255)

	switch {
	case r.Status != "":
		if !validStatus(r.Status) {
			return p, fmt.Errorf("malformed status %q", r.Status)
		}
		p.status = r.Status
	default:
		p.status = StatusFromReply(p.reply, def)
		// A reply contradicting the action (a 250 reported as failed)
		// says nothing reliable about this recipient.
		if !strings.Contains(classes, p.status[:1]) {
			p.status = def
		}
	}

	if p.reply != "" {
		// "smtp" promises an SMTP reply (RFC 3464 section 2.3.6); our own
		// diagnostics get a private type, as Postfix does with X-Postfix.
		typ := "X-Clustermail"
		if isSMTPReply(p.reply) {
			typ = "smtp"
		}
		p.diagnostic = typ + "; " + asciiOnly(p.reply)
	}
	return p, nil
}

// subject picks the Subject from the most serious action reported.
func subject(rs []rcpt) string {
	if hasAction(rs, Failed) {
		return "Undelivered Mail Returned to Sender"
	}
	if hasAction(rs, Delayed) {
		return "Delayed Mail (still being retried)"
	}
	return "Successful Mail Delivery Report"
}

func hasAction(rs []rcpt, a Action) bool {
	for _, r := range rs {
		if r.Action == a {
			return true
		}
	}
	return false
}

// part is one body part, rendered, before the boundary is known.
type part struct {
	header textproto.MIMEHeader
	body   []byte
}

// pickBoundary returns a random boundary that occurs in no part. With 130
// random bits a collision is practically impossible, but the body holds
// text chosen by strangers, so it is checked rather than hoped for. The
// "=_" prefix cannot occur in quoted-printable output at all.
func pickBoundary(parts []part) (string, error) {
	var lower [][]byte
	for _, p := range parts {
		var h strings.Builder
		for k, vs := range p.header {
			h.WriteString(k + ": " + strings.Join(vs, " ") + "\n")
		}
		// Compared case-insensitively in case a lenient parser on the
		// other end matches boundaries that way.
		lower = append(lower, bytes.ToLower([]byte(h.String())), bytes.ToLower(p.body))
	}
	for range 8 {
		boundary := "=_" + newBoundaryToken()
		needle := []byte(strings.ToLower(boundary))
		clash := false
		for _, l := range lower {
			if bytes.Contains(l, needle) {
				clash = true
				break
			}
		}
		if !clash {
			return boundary, nil
		}
	}
	return "", errors.New("dsn: no MIME boundary free of the message content after 8 tries")
}

// checkWire verifies the invariants of a message on the wire: CRLF line
// endings only and no line over RFC 5322's 998 octets.
func checkWire(b []byte) error {
	line := 1
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return fmt.Errorf("line %d: no line ending at the end", line)
		}
		if i == 0 || b[i-1] != '\r' {
			return fmt.Errorf("line %d: bare LF", line)
		}
		l := b[:i-1]
		if bytes.IndexByte(l, '\r') >= 0 {
			return fmt.Errorf("line %d: bare CR", line)
		}
		if len(l) > 998 {
			return fmt.Errorf("line %d: %d octets, more than 998", line, len(l))
		}
		b = b[i+1:]
		line++
	}
	return nil
}

// checkHost accepts an ASCII host name (RFC 1123 letters, digits, hyphens,
// dots; underscores tolerated), the form Reporting-MTA's "dns" type needs.
func checkHost(h string) error {
	if h == "" {
		return errors.New("empty host name")
	}
	if len(h) > 253 {
		return fmt.Errorf("host name of %d octets, more than 253", len(h))
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return fmt.Errorf("host name %q: character %q not allowed (use the ASCII A-label form)", h, c)
		}
	}
	return nil
}

// checkQueueID accepts "" or printable ASCII without spaces, so the id
// stays one token in its field.
func checkQueueID(id string) error {
	if len(id) > 128 {
		return fmt.Errorf("%d octets, more than 128", len(id))
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] >= 0x7f {
			return fmt.Errorf("character %q not allowed", id[i])
		}
	}
	return nil
}

// checkAddress rejects addresses that could break the message structure.
// Addresses come from our own queue, which took them from an SMTP session,
// so a control character means a bug upstream, not something to repair.
func checkAddress(a string) error {
	if a == "" {
		return errors.New("empty address")
	}
	if len(a) > maxAddress {
		return fmt.Errorf("address of %d octets, more than %d", len(a), maxAddress)
	}
	if !utf8.ValidString(a) {
		return errors.New("address is not valid UTF-8")
	}
	for _, r := range a {
		if r < ' ' || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return fmt.Errorf("control character %U in address", r)
		}
	}
	return nil
}

// typedAddress renders an address with its RFC 3464 address type: plain
// "rfc822" for ASCII, else RFC 6533 "utf-8" in the 7-bit xtext form that
// message/delivery-status requires.
func typedAddress(a string) (string, error) {
	if err := checkAddress(a); err != nil {
		return "", err
	}
	if isASCII(a) {
		return "rfc822; " + a, nil
	}
	x := utf8AddrXtext(a)
	if len(x) > maxAddress {
		return "", fmt.Errorf("address encodes to %d octets, more than %d", len(x), maxAddress)
	}
	return "utf-8; " + x, nil
}

// utf8AddrXtext encodes a as RFC 6533 utf-8-addr-xtext: QCHARs (printable
// ASCII except '+', '=' and '\') as is, every other character as \x{HEX}.
func utf8AddrXtext(a string) string {
	var b strings.Builder
	for _, r := range a {
		if r > ' ' && r < 0x7f && r != '+' && r != '=' && r != '\\' {
			b.WriteRune(r)
			continue
		}
		fmt.Fprintf(&b, `\x{%X}`, r)
	}
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
