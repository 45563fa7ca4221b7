package outbound

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

const (
	// maxReplyLine bounds one reply line, CRLF included. RFC 5321 4.5.3.1.5
	// says 512; servers exceed it, so allow much more, but not without end:
	// the reader's buffer is this size and a longer line is a protocol error.
	maxReplyLine = 4096
	// maxReplyLines bounds a multi-line reply (an EHLO answer has a dozen).
	maxReplyLines = 100
	// maxReplyText bounds the text kept in a Result: it ends up in logs, the
	// queue record and bounce messages.
	maxReplyText = 1000
)

// errProtocol marks a reply that does not follow RFC 5321 4.2.
var errProtocol = errors.New("SMTP protocol violation")

// reply is a server's reply, or our own text in the same form for failures
// that have no server reply (DNS, connection).
type reply struct {
	code     int    // three-digit reply code
	enhanced string // RFC 3463 code such as "5.1.1"; derived from code when the server sent none
	text     string // one line: CR, LF and other controls removed, multi-line replies joined with a space
	// lines are the raw texts of the reply lines (after the code and the
	// separator), kept only because EHLO lists its keywords one per line.
	lines []string
}

// ownReply is a reply we make up for a failure that has no server reply.
func ownReply(code int, enhanced, format string, args ...any) reply {
	return reply{code: code, enhanced: enhanced, text: cleanText(fmt.Sprintf(format, args...))}
}

// String gives the reply as it goes into a Result: "550 5.1.1 no such user".
func (r reply) String() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.code))
	if r.enhanced != "" {
		b.WriteByte(' ')
		b.WriteString(r.enhanced)
	}
	if r.text != "" {
		b.WriteByte(' ')
		b.WriteString(r.text)
	}
	return b.String()
}

// class is the first digit of the code: 2 success, 3 intermediate,
// 4 temporary failure, 5 permanent failure.
func (r reply) class() int { return r.code / 100 }

// status is what the reply means for a recipient when it is the final word
// on it (the reply to DATA's end, or a refusal). Anything but a clear 2xx or
// 5xx is Deferred: a reply we do not understand must not lose nor bounce mail.
func (r reply) status() Status {
	switch r.class() {
	case 2:
		return Delivered
	case 5:
		return Failed
	default:
		return Deferred
	}
}

// readReply reads one reply, possibly of several lines (RFC 5321 4.2.1).
// br's buffer must be maxReplyLine bytes long: a line that does not fit is a
// protocol error rather than unbounded memory. Errors other than errProtocol
// come from the connection.
func readReply(br *bufio.Reader) (reply, error) {
	var (
		code  int
		lines []string
	)
	for {
		if len(lines) == maxReplyLines {
			return reply{}, fmt.Errorf("%w: reply of more than %d lines", errProtocol, maxReplyLines)
		}
		raw, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return reply{}, fmt.Errorf("%w: reply line longer than %d bytes", errProtocol, maxReplyLine)
		case err == io.EOF && len(raw) > 0:
			return reply{}, io.ErrUnexpectedEOF
		case err != nil:
			return reply{}, err
		}
		// RFC 5321 wants CRLF; a bare LF is accepted since nothing is
		// ambiguous about it in a reply.
		line := strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
		c, last, text, err := parseReplyLine(line)
		if err != nil {
			return reply{}, err
		}
		if len(lines) > 0 && c != code {
			return reply{}, fmt.Errorf("%w: reply lines with codes %d and %d", errProtocol, code, c)
		}
		code = c
		lines = append(lines, text)
		if last {
			return newReply(code, lines), nil
		}
	}
}

// parseReplyLine splits "250-text" or "250 text" (or a bare "250").
func parseReplyLine(line string) (code int, last bool, text string, err error) {
	if len(line) < 3 || !isDigits(line[:3]) || line[0] < '2' || line[0] > '5' {
		return 0, false, "", fmt.Errorf("%w: reply line %q does not start with a reply code", errProtocol, truncate(line, 40))
	}
	code, _ = strconv.Atoi(line[:3])
	if len(line) == 3 {
		return code, true, "", nil
	}
	switch line[3] {
	case ' ':
		return code, true, line[4:], nil
	case '-':
		return code, false, line[4:], nil
	}
	return 0, false, "", fmt.Errorf("%w: reply line %q: bad separator after the code", errProtocol, truncate(line, 40))
}

// newReply builds a reply from the texts of its lines: it takes the
// enhanced code off the first line (RFC 2034 repeats it on every line, so it
// comes off the others too), derives X.0.0 when there is none, and joins the
// lines into one clean line.
func newReply(code int, lines []string) reply {
	r := reply{code: code, lines: lines}
	texts := make([]string, len(lines))
	copy(texts, lines)
	if enh, rest, ok := cutEnhanced(code, texts[0]); ok {
		r.enhanced = enh
		texts[0] = rest
		for i := 1; i < len(texts); i++ {
			if e, rest, ok := cutEnhanced(code, texts[i]); ok && e == enh {
				texts[i] = rest
			}
		}
	} else if c := code / 100; c == 2 || c == 4 || c == 5 {
		r.enhanced = strconv.Itoa(c) + ".0.0"
	}
	r.text = cleanText(strings.Join(texts, " "))
	return r
}

// cutEnhanced takes an RFC 3463 status code off the start of s. The code's
// class must match the reply's (a "250 5.1.1" is not believed); subject and
// detail are one to three digits.
func cutEnhanced(code int, s string) (enh, rest string, ok bool) {
	end := strings.IndexByte(s, ' ')
	if end < 0 {
		end = len(s)
	}
	parts := strings.Split(s[:end], ".")
	if len(parts) != 3 || parts[0] != strconv.Itoa(code/100) {
		return "", "", false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 || !isDigits(p) {
			return "", "", false
		}
	}
	if c := code / 100; c != 2 && c != 4 && c != 5 {
		return "", "", false
	}
	return s[:end], strings.TrimPrefix(s[end:], " "), true
}

// cleanText makes s safe for one line of a log, a queue record or a DSN:
// valid UTF-8, no control characters (CR and LF above all, which would start
// a new line or header), no surrounding space, and at most maxReplyText bytes.
func cleanText(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	return truncate(strings.TrimSpace(s), maxReplyText)
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return strings.TrimSpace(s[:n])
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
