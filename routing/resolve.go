package routing

import (
	"errors"
	"fmt"

	"clustermail/directory"
)

// Recipient resolution errors, mapped to SMTP replies by smtpd.
var (
	ErrNotHosted   = errors.New("domain not hosted here")
	ErrNoSuchUser  = errors.New("no such user")
	ErrLookupError = errors.New("directory lookup failed")
)

// Target is one final mailbox a RCPT expands to.
type Target struct {
	Addr string // the account
	Orig string // the address given at RCPT
	Node string // the account's owner node
}

// Resolve expands a recipient address into mailbox targets from this
// node's replica of the directory.
func (r *Router) Resolve(rcpt string) ([]Target, error) {
	res, err := r.dir.Resolve(rcpt)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLookupError, err)
	}
	if !res.Hosted {
		return nil, ErrNotHosted
	}
	if len(res.Accounts) == 0 {
		return nil, ErrNoSuchUser
	}
	orig := directory.Normalize(rcpt)
	out := make([]Target, 0, len(res.Accounts))
	for _, a := range res.Accounts {
		t := Target{Addr: a.Address, Node: a.Node}
		if a.Address != orig {
			t.Orig = orig
		}
		out = append(out, t)
	}
	return out, nil
}
