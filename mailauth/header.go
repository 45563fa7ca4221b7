package mailauth

import (
	"bytes"
	"strings"
)

// field is one header field of a raw message: msg[start:end] holds its
// name, value and folded continuation lines with their line endings.
type field struct {
	name       string // as written, without trailing blanks
	start, end int
	colon      int // index of the ':' in msg, -1 when the line has none
}

// value returns the field's value unfolded: line breaks become spaces.
func (f field) value(msg []byte) string {
	if f.colon < 0 {
		return ""
	}
	v := msg[f.colon+1 : f.end]
	return strings.TrimSpace(strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(string(v)))
}

// headerFields splits the header section of msg (up to the first empty
// line, or all of msg when there is none) into fields. A line starting
// with a blank continues the field before it; one before any field is a
// field of its own with no name, kept as it is.
func headerFields(msg []byte) []field {
	var fields []field
	for pos := 0; pos < len(msg); {
		eol := bytes.IndexByte(msg[pos:], '\n')
		next := len(msg)
		if eol >= 0 {
			next = pos + eol + 1
		}
		line := msg[pos:next]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break // the empty line that ends the header
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1].end = next
		} else {
			f := field{start: pos, end: next, colon: -1}
			if c := bytes.IndexByte(line, ':'); c >= 0 {
				f.colon = pos + c
				f.name = strings.TrimRight(string(line[:c]), " \t")
			}
			fields = append(fields, f)
		}
		pos = next
	}
	return fields
}

const authResultsField = "Authentication-Results"

// StripForged removes every Authentication-Results field of msg that
// claims authservID, our own: only we may write those (RFC 8601 section
// 5), and a downstream filter or user trusts them. Fields of other
// authentication services stay. msg itself is returned when nothing goes.
func StripForged(msg []byte, authservID string) []byte {
	var drop []field
	for _, f := range headerFields(msg) {
		if strings.EqualFold(f.name, authResultsField) && strings.EqualFold(authservIDOf(f.value(msg)), authservID) {
			drop = append(drop, f)
		}
	}
	if len(drop) == 0 {
		return msg
	}
	out := make([]byte, 0, len(msg))
	pos := 0
	for _, f := range drop {
		out = append(out, msg[pos:f.start]...)
		pos = f.end
	}
	return append(out, msg[pos:]...)
}

// authservIDOf returns the authserv-id an Authentication-Results value
// starts with (RFC 8601 section 2.2): a token or a quoted string after
// optional comments and blanks; "" when there is none.
func authservIDOf(v string) string {
	i := skipCFWS(v, 0)
	if i < len(v) && v[i] == '"' {
		var b strings.Builder
		for i++; i < len(v); i++ {
			switch v[i] {
			case '\\':
				if i+1 < len(v) {
					i++
					b.WriteByte(v[i])
				}
			case '"':
				return b.String()
			default:
				b.WriteByte(v[i])
			}
		}
		return "" // unterminated
	}
	j := i
	for j < len(v) && !strings.ContainsRune(" \t\r\n;()\"", rune(v[j])) {
		j++
	}
	return v[i:j]
}

// skipCFWS skips blanks and (possibly nested) comments from i.
func skipCFWS(v string, i int) int {
	depth := 0
	for i < len(v) {
		switch c := v[i]; {
		case c == '\\' && depth > 0:
			i++
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0 && c != ' ' && c != '\t' && c != '\r' && c != '\n':
			return i
		}
		i++
	}
	return min(i, len(v)) // a trailing backslash steps past the end
}

// headerValues returns the unfolded values of the fields called name.
func headerValues(msg []byte, name string) []string {
	var vs []string
	for _, f := range headerFields(msg) {
		if strings.EqualFold(f.name, name) {
			vs = append(vs, f.value(msg))
		}
	}
	return vs
}
