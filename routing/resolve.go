package routing

import (
	"errors"
	"fmt"
	"strings"

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
	Addr   string // the account, or the remote address
	Orig   string // the address given at RCPT, when it differs
	Node   string // the account's owner node; for a remote address, this node
	Remote bool   // delivered out through DNS
	Junk   bool   // into the Junk mailbox, not INBOX (DMARC quarantine)
}

// Resolve expands a recipient address into mailbox targets from this
// node's replica of the directory.
func (r *Router) Resolve(rcpt string) ([]Target, error) {
	res, err := r.dir.Resolve(rcpt)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLookupError, err)
	}
	negative := !res.Hosted || len(res.Accounts) == 0 && len(res.Remote) == 0
	if negative {
		// A replica that is not current (a node just restarted, or cut
		// off) may not know a domain or account yet: a permanent refusal
		// from it would bounce good mail, so it only says "later".
		if why := r.members.Ready(r.applied()); why != "" {
			return nil, fmt.Errorf("%w: this node's directory is not current (%s)", ErrLookupError, why)
		}
	}
	if !res.Hosted {
		return nil, ErrNotHosted
	}
	if len(res.Accounts) == 0 && len(res.Remote) == 0 {
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
	// An alias forwarding out is sent by this node, which holds the body.
	for _, a := range res.Remote {
		out = append(out, Target{Addr: a, Orig: orig, Node: r.members.Name(), Remote: true})
	}
	return out, nil
}

// ResolveAny resolves a recipient of an authenticated sender: a hosted
// address as Resolve does, any other address as a remote destination.
func (r *Router) ResolveAny(rcpt string) ([]Target, error) {
	t, err := r.Resolve(rcpt)
	if errors.Is(err, ErrNotHosted) {
		// The local part keeps its case: only the remote server may decide
		// what it means.
		return []Target{{Addr: strings.TrimSpace(rcpt), Node: r.members.Name(), Remote: true}}, nil
	}
	return t, err
}
