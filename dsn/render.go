package dsn

import (
	"bytes"
	"fmt"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	// textWidth is where the human-readable part wraps, in characters,
	// leaving room for quoting in a reply under the usual 78 columns.
	textWidth = 76

	// foldWidth is where header-style fields fold when they can.
	foldWidth = 78

	// maxWord is the longest run without a space a field line carries
	// before it is split by force, keeping every line under 998 octets.
	maxWord = 900
)

// textPart renders the human-readable explanation, in the spirit of
// Postfix's bounce messages: what happened, whether to act, and per
// recipient the reply that explains it.
func textPart(m Message, rs []rcpt, now time.Time, truncated bool) part {
	var lines []string
	para := func(s string) {
		lines = append(lines, wrap(s, "", textWidth)...)
		lines = append(lines, "")
	}
	para("This is the mail system at host " + m.ReportingMTA + ".")
	switch {
	case hasAction(rs, Failed):
		para("Your message could not be delivered to one or more recipients, " +
			"and the mail system has given up on them. The reasons are listed below.")
		if hasAction(rs, Delayed) {
			para("Delivery to the other recipients listed below is still being " +
				"retried. You will get another report if it fails.")
		}
	case hasAction(rs, Delayed):
		para("This is only a warning: you do not need to resend your message.")
		waited := ""
		if !m.Arrival.IsZero() && now.After(m.Arrival) {
			waited = " It has been waiting for " + humanDuration(now.Sub(m.Arrival)) + "."
		}
		para("Your message has not been delivered yet to the recipients listed below." +
			waited + " The mail system keeps trying until the time shown for each " +
			"recipient, and will tell you if it gives up.")
	default:
		para("This is a report on the delivery of your message to the recipients listed below.")
	}
	attached := "The headers of your message are attached."
	if truncated {
		attached = fmt.Sprintf("The headers of your message are attached, cut short at %d KiB.", maxHeaderSection>>10)
	}
	para("If you need help, contact your postmaster and include this report. " + attached)
	if m.QueueID != "" {
		para("Queue ID: " + m.QueueID)
	}

	sections := []struct {
		action Action
		title  string
	}{
		{Failed, "Delivery failed for these recipients:"},
		{Delayed, "Delivery is still being retried for these recipients:"},
		{Delivered, "Your message was delivered to these recipients:"},
		{Relayed, "Your message was relayed to these recipients, whose systems may send no further reports:"},
		{Expanded, "Your message was delivered to these recipients and forwarded from there:"},
	}
	for _, s := range sections {
		if !hasAction(rs, s.action) {
			continue
		}
		lines = append(lines, wrap(s.title, "", textWidth)...)
		lines = append(lines, "")
		for _, r := range rs {
			if r.Action != s.action {
				continue
			}
			who := "<" + r.Final + ">"
			if r.origAddr != "" {
				who += " (sent to <" + r.Original + ">)"
			}
			lines = append(lines, wrap(who+":", "", textWidth)...)
			if r.reply != "" {
				said := r.reply
				if r.remoteMTA != "" {
					said = "host " + r.remoteMTA + " said: " + r.reply
				}
				lines = append(lines, wrap(said, "    ", textWidth)...)
			}
			if !r.LastAttempt.IsZero() {
				lines = append(lines, "    Last attempt: "+r.LastAttempt.Format(dateLayout))
			}
			if r.Action == Delayed && !r.WillRetryUntil.IsZero() {
				lines = append(lines, "    Will retry until: "+r.WillRetryUntil.Format(dateLayout))
			}
			lines = append(lines, "")
		}
	}
	text := strings.Join(lines, "\r\n")

	h := textproto.MIMEHeader{}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Description", "Notification")
	if isASCII(text) {
		h.Set("Content-Transfer-Encoding", "7bit")
		return part{h, []byte(text)}
	}
	// Quoted-printable rather than 8bit: the sender's server may not
	// offer 8BITMIME, and the queue should not have to downgrade.
	h.Set("Content-Transfer-Encoding", "quoted-printable")
	return part{h, qp([]byte(text))}
}

// statusPart renders the message/delivery-status part (RFC 3464 section
// 2): per-message fields, then one blank-line separated group per
// recipient. Every value is ASCII and folded.
func statusPart(m Message, rs []rcpt) part {
	var b bytes.Buffer
	writeField(&b, "Reporting-MTA", "dns; "+m.ReportingMTA)
	if !m.Arrival.IsZero() {
		writeField(&b, "Arrival-Date", m.Arrival.Format(dateLayout))
	}
	// Extension fields come last in RFC 3464's grammar.
	if m.QueueID != "" {
		writeField(&b, queueIDHeader, m.QueueID)
	}
	for _, r := range rs {
		b.WriteString("\r\n")
		// Addresses are never folded: some parsers split the type from the
		// address at "; " without unfolding, and typedAddress keeps them
		// short enough for one line.
		if r.origAddr != "" {
			b.WriteString("Original-Recipient: " + r.origAddr + "\r\n")
		}
		b.WriteString("Final-Recipient: " + r.finalAddr + "\r\n")
		writeField(&b, "Action", string(r.Action))
		writeField(&b, "Status", r.status)
		if r.remoteMTA != "" {
			writeField(&b, "Remote-MTA", "dns; "+asciiOnly(r.remoteMTA))
		}
		if r.diagnostic != "" {
			writeField(&b, "Diagnostic-Code", r.diagnostic)
		}
		if !r.LastAttempt.IsZero() {
			writeField(&b, "Last-Attempt-Date", r.LastAttempt.Format(dateLayout))
		}
		if r.Action == Delayed && !r.WillRetryUntil.IsZero() {
			writeField(&b, "Will-Retry-Until", r.WillRetryUntil.Format(dateLayout))
		}
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", "message/delivery-status")
	h.Set("Content-Description", "Delivery report")
	return part{h, b.Bytes()}
}

// headersPart renders the original header section as text/rfc822-headers.
// Clean 7-bit headers go as they are (line endings made CRLF); anything
// else (8-bit, NULs, bare CRs, over-long lines) goes quoted-printable,
// which carries every byte and wraps lines, so a malformed original can
// never make the report malformed.
func headersPart(section []byte) part {
	h := textproto.MIMEHeader{}
	h.Set("Content-Description", "Undelivered message headers")
	if len(section) == 0 {
		h.Set("Content-Type", "text/rfc822-headers")
		return part{h, nil}
	}
	if body, ok := crlf7bit(section); ok {
		h.Set("Content-Type", "text/rfc822-headers")
		h.Set("Content-Transfer-Encoding", "7bit")
		return part{h, body}
	}
	charset := "utf-8" // RFC 6532 headers
	if !utf8.Valid(section) {
		charset = "unknown-8bit" // RFC 1428: honest about not knowing
	}
	h.Set("Content-Type", "text/rfc822-headers; charset="+charset)
	h.Set("Content-Transfer-Encoding", "quoted-printable")
	return part{h, qp(section)}
}

// crlf7bit returns b with CRLF line endings if it is clean 7-bit text:
// printable ASCII and tabs in lines of at most 998 octets.
func crlf7bit(b []byte) ([]byte, bool) {
	var out bytes.Buffer
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > 998 {
			return nil, false
		}
		for _, c := range line {
			if (c < ' ' && c != '\t') || c >= 0x7f {
				return nil, false
			}
		}
		out.Write(line)
		out.WriteString("\r\n")
	}
	return out.Bytes(), true
}

// qp encodes b as quoted-printable text: line breaks (LF, CRLF, lone CR)
// become CRLF, everything else that is not plain ASCII is escaped.
func qp(b []byte) []byte {
	var out bytes.Buffer
	w := quotedprintable.NewWriter(&out)
	// Writes to a bytes.Buffer do not fail.
	_, _ = w.Write(b)
	if len(b) > 0 && b[len(b)-1] != '\n' {
		_, _ = w.Write([]byte("\n"))
	}
	_ = w.Close()
	return out.Bytes()
}

// headerSection returns the header section of msg: everything before the
// first empty line, or all of msg if there is none. A section over
// maxHeaderSection is cut at the last field boundary that fits, so what
// remains is whole fields; failing that (one giant field) at a line
// boundary, and failing that (one giant line) at a character boundary.
func headerSection(msg []byte) (section []byte, truncated bool) {
	lastField := 0 // start of the field the current line belongs to
	for i := 0; i < len(msg); {
		next := len(msg)
		if j := bytes.IndexByte(msg[i:], '\n'); j >= 0 {
			next = i + j + 1
		}
		line := msg[i:next]
		if bytes.Equal(line, []byte("\n")) || bytes.Equal(line, []byte("\r\n")) {
			return msg[:i], false
		}
		if line[0] != ' ' && line[0] != '\t' {
			lastField = i
		}
		if next > maxHeaderSection {
			cut := lastField
			if cut == 0 {
				cut = i
			}
			if cut == 0 {
				cut = maxHeaderSection
				for cut > 0 && !utf8.RuneStart(msg[cut]) {
					cut--
				}
			}
			return msg[:cut], true
		}
		i = next
	}
	return msg, false
}

// clean makes untrusted text safe to embed in a field or a line: every
// kind of line break and other white space becomes one space, control and
// bidirectional-override characters are dropped (they could forge header
// lines or disguise text), invalid UTF-8 becomes U+FFFD, and the result is
// cut to at most limit octets, marked with "...".
func clean(s string, limit int) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			space = true
			continue
		case unicode.IsControl(r), isBidiControl(r):
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		if b.Len()+utf8.RuneLen(r) > limit-3 {
			b.WriteString("...")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// isBidiControl reports the invisible characters that reorder text, which
// can make a reply display as something it does not say.
func isBidiControl(r rune) bool {
	return r == 0x061c || r == 0x200e || r == 0x200f ||
		r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069
}

// asciiOnly replaces every non-ASCII character with '?'. The
// delivery-status part is 7-bit (RFC 3464); the text part keeps the
// original characters for people to read.
func asciiOnly(s string) string {
	if isASCII(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r >= utf8.RuneSelf {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// writeField writes "Name: value" folded per RFC 5322 section 2.2.3: at
// spaces, before foldWidth where possible, and by force inside a run
// longer than maxWord (which then reads back with an extra space).
func writeField(b *bytes.Buffer, name, value string) {
	b.WriteString(name + ":")
	n := len(name) + 1
	first := true
	for _, w := range strings.Split(value, " ") {
		for w != "" {
			chunk := w[:cutAt(w, maxWord)]
			w = w[len(chunk):]
			if !first && n+1+len(chunk) > foldWidth {
				b.WriteString("\r\n")
				n = 0
			}
			b.WriteString(" " + chunk)
			n += 1 + len(chunk)
			first = false
		}
	}
	b.WriteString("\r\n")
}

// cutAt returns how many octets of s to take to get at most limit octets
// without splitting a UTF-8 sequence.
func cutAt(s string, limit int) int {
	if len(s) <= limit {
		return len(s)
	}
	n := limit
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	if n == 0 {
		return limit // not UTF-8 at all; octets it is
	}
	return n
}

// wrap breaks s into lines of at most width characters, each starting with
// indent, at spaces where possible and inside over-long words otherwise.
func wrap(s, indent string, width int) []string {
	room := max(1, width-utf8.RuneCountInString(indent))
	var lines []string
	var line strings.Builder
	n := 0 // characters on line, after indent
	for _, w := range strings.Fields(s) {
		for w != "" {
			chunk := w
			if utf8.RuneCountInString(chunk) > room {
				chunk = firstRunes(chunk, room)
			}
			w = w[len(chunk):]
			cn := utf8.RuneCountInString(chunk)
			if n > 0 && n+1+cn > room {
				lines = append(lines, line.String())
				line.Reset()
				n = 0
			}
			if n == 0 {
				line.WriteString(indent)
			} else {
				line.WriteByte(' ')
				n++
			}
			line.WriteString(chunk)
			n += cn
		}
	}
	if n > 0 {
		lines = append(lines, line.String())
	}
	return lines
}

// firstRunes returns the first n characters of s.
func firstRunes(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

// humanDuration says roughly how long d is, in the largest fitting unit.
func humanDuration(d time.Duration) string {
	unit := func(n int, name string) string {
		if n == 1 {
			return "1 " + name
		}
		return fmt.Sprintf("%d %ss", n, name)
	}
	switch {
	case d < time.Hour:
		return unit(max(1, int(d.Round(time.Minute)/time.Minute)), "minute")
	case d < 48*time.Hour:
		return unit(int(d.Round(time.Hour)/time.Hour), "hour")
	default:
		return unit(int(d.Round(24*time.Hour)/(24*time.Hour)), "day")
	}
}
