package smtpd

import (
	"bytes"
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
	if s.err = s.check(p[:n]); s.err != nil {
		return 0, s.err
	}
	if err == io.EOF && s.cr {
		s.err = errBareCR
		return 0, s.err
	}
	return n, err
}

// check scans b a line piece at a time with bytes.IndexByte (a message
// is mostly long runs without CR or LF), reporting the first fault in byte
// order as a loop over single octets would.
func (s *strictReader) check(b []byte) error {
	for len(b) > 0 {
		if s.cr {
			if b[0] != '\n' {
				return errBareCR
			}
			s.cr, s.line, b = false, 0, b[1:]
			continue
		}
		piece := b
		cr := bytes.IndexByte(b, '\r')
		if cr >= 0 {
			piece = b[:cr]
		}
		lf := bytes.IndexByte(piece, '\n')
		if lf >= 0 {
			piece = piece[:lf] // what precedes the bare LF
		}
		if s.max > 0 && s.line+len(piece) > s.max-2 {
			return errLineTooLong
		}
		if lf >= 0 {
			return errBareLF
		}
		s.line += len(piece)
		if cr < 0 {
			return nil
		}
		s.cr, b = true, b[cr+1:]
	}
	return nil
}
