package smtpd

import (
	"errors"

	"github.com/emersion/go-sasl"
)

// loginServer is the LOGIN mechanism (draft-murchison-sasl-login), which
// go-sasl no longer provides but Outlook and older clients still use.
type loginServer struct {
	step       int
	user       string
	check      func(user, pass string) error
	initialSet bool
}

func newLoginServer(check func(user, pass string) error) sasl.Server {
	return &loginServer{check: check}
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if len(resp) > 0 { // the username came as an initial response
			l.user = string(resp)
			l.step = 2
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user = string(resp)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.user, string(resp))
	}
	return nil, false, errors.New("unexpected LOGIN response")
}
