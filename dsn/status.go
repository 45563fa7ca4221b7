package dsn

import "strings"

// StatusFromReply returns the enhanced status code (RFC 3463, "5.1.1") of
// an SMTP reply such as "550 5.1.1 <x@y>: no such user". A reply without
// one yields its class as "X.0.0" ("451 busy" gives "4.0.0"). Anything
// that does not start with a 2xx, 4xx or 5xx reply code yields fallback,
// unchecked.
//
// Only the first line of a multi-line reply is read. When the enhanced
// code's class disagrees with the reply code ("550 4.1.1"), the reply code
// wins, because it is what the SMTP client acted on: the result is "5.1.1".
func StatusFromReply(reply, fallback string) string {
	s := strings.TrimLeft(reply, " \t")
	if len(s) < 3 || !isDigit(s[0]) || !isDigit(s[1]) || !isDigit(s[2]) {
		return fallback
	}
	class := s[0]
	if class != '2' && class != '4' && class != '5' {
		return fallback
	}
	rest := s[3:]
	if rest == "" {
		return string(class) + ".0.0"
	}
	if rest[0] != ' ' && rest[0] != '-' {
		return fallback // "5501 ..." is not a reply code
	}
	rest = strings.TrimLeft(rest[1:], " \t")
	tok := rest
	if i := strings.IndexAny(rest, " \t\r\n"); i >= 0 {
		tok = rest[:i]
	}
	if validStatus(tok) {
		return string(class) + tok[1:]
	}
	return string(class) + ".0.0"
}

// validStatus reports whether s is an RFC 3463 status code:
// class "." subject "." detail, class one of 2, 4, 5, the others 1 to 3
// digits.
func validStatus(s string) bool {
	if len(s) < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.' {
		return false
	}
	subject, detail, ok := strings.Cut(s[2:], ".")
	return ok && isNumber(subject, 3) && isNumber(detail, 3)
}

// isSMTPReply reports whether s starts like an SMTP reply, "550 ..." or
// "451-...", which decides the Diagnostic-Code type.
func isSMTPReply(s string) bool {
	if len(s) < 3 || s[0] < '2' || s[0] > '5' || !isDigit(s[1]) || !isDigit(s[2]) {
		return false
	}
	return len(s) == 3 || s[3] == ' ' || s[3] == '-'
}

func isNumber(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
