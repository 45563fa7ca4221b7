package node

import "clustermail/throttle"

// limits is the state of the limits against abuse that the node's
// listeners share, so that a client gets one allowance whichever port it
// uses: failed logins lock an account or address out of SMTP AUTH, IMAP
// and POP3 together, and the sending rate covers both submission ports.
// The listeners start one after the other, so no lock is needed.
type limits struct {
	logins *throttle.Limiter
	rate   *throttle.Rate
}

func (l *limits) loginFailures() *throttle.Limiter {
	if l.logins == nil {
		l.logins = throttle.New()
	}
	return l.logins
}

func (l *limits) sendRate(perHour int) *throttle.Rate {
	if l.rate == nil {
		l.rate = throttle.NewRate(perHour)
	}
	return l.rate
}
