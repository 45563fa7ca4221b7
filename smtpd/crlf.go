package smtpd

import (
	"io"

	"github.com/emersion/go-smtp"
)

// Errors of the strict DATA reader. go-smtp passes bare CR and bare LF
// through to the backend; accepting them is how SMTP smuggling
// (CVE-2023-51764/5/6) slips a second message past a filter.
var (
	errBareLF = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Message refused: bare LF in DATA (lines must end with CRLF)"}
	errBareCR = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Message refused: bare CR in DATA (lines must end with CRLF)"}
	errLineTooLong = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Line too long in DATA"}
)

// strictReader passes data through while checking that every CR is
// followed by LF, every LF preceded by CR, and no line is longer than max
// octets (CRLF included).
type strictReader struct {
	r    io.Reader
	max  int
	line int
	cr   bool // the previous byte was CR
	err  error
}

func (s *strictReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	for _, c := range p[:n] {
		switch {
		case s.cr && c != '\n':
			s.err = errBareCR
		case c == '\n' && !s.cr:
			s.err = errBareLF
		}
		if s.err != nil {
			return 0, s.err
		}
		s.cr = c == '\r'
		switch c {
		case '\n':
			s.line = 0
		case '\r':
		default:
			s.line++
			if s.max > 0 && s.line > s.max-2 {
				s.err = errLineTooLong
				return 0, s.err
			}
		}
	}
	if err == io.EOF && s.cr {
		s.err = errBareCR
		return 0, s.err
	}
	return n, err
}
