// Package directory is the replicated mailbox directory: hosted domains,
// accounts (password hash, quota, owner node) and aliases. Reads come from
// the local replica of the state; writes are Raft commands proposed through
// an Applier, so they work on any node.
package directory

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"clustermail/raftstore"
)

// Command types of the directory. Append-only: never renumber.
const (
	cmdDomainAdd       raftstore.CommandType = 1
	cmdDomainRemove    raftstore.CommandType = 2
	cmdAccountAdd      raftstore.CommandType = 3
	cmdAccountPassword raftstore.CommandType = 4
	cmdAccountRemove   raftstore.CommandType = 5
	cmdAliasSet        raftstore.CommandType = 6
	cmdAliasRemove     raftstore.CommandType = 7
	cmdDKIMKeyAdd      raftstore.CommandType = 8
	cmdDKIMKeyRemove   raftstore.CommandType = 9
)

// Key tables inside raftstore.PrefixDirectory's range.
const (
	tblDomain  = raftstore.PrefixDirectory + 0
	tblAccount = raftstore.PrefixDirectory + 1
	tblAlias   = raftstore.PrefixDirectory + 2
	tblDKIMKey = raftstore.PrefixDirectory + 3 // domain, 0, selector
)

// Domain is a hosted mail domain.
type Domain struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// Account is a mailbox holder.
type Account struct {
	Address string    `json:"address"`
	Hash    string    `json:"hash"`
	Quota   int64     `json:"quota"` // bytes, 0 = unlimited
	Node    string    `json:"node"`  // the node that stores the mailbox
	Created time.Time `json:"created"`
}

// Alias forwards an address to others.
type Alias struct {
	Alias   string    `json:"alias"`
	Targets []string  `json:"targets"`
	Created time.Time `json:"created"`
}

// Applier commits a command through Raft from any node.
type Applier interface {
	Apply(ctx context.Context, cmd []byte) error
}

// Directory reads and writes the replicated directory.
type Directory struct {
	state raftstore.Reader
	apply Applier
	now   func() time.Time
}

// New returns a directory reading from state and writing through apply.
func New(state raftstore.Reader, apply Applier) *Directory {
	return &Directory{state: state, apply: apply, now: time.Now}
}

func key(tbl byte, name string) []byte { return append([]byte{tbl}, name...) }

func getJSON[T any](r raftstore.Reader, k []byte) (T, bool, error) {
	var v T
	b, ok, err := r.Get(k)
	if err != nil || !ok {
		return v, ok, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, false, fmt.Errorf("decode %q: %w", k, err)
	}
	return v, true, nil
}

func listJSON[T any](r raftstore.Reader, tbl byte, prefix string) ([]T, error) {
	out := []T{}
	lower := key(tbl, prefix)
	upper := []byte{tbl + 1}
	if prefix != "" {
		upper = append(key(tbl, prefix), 0xff)
	}
	var derr error
	err := r.Iter(lower, upper, func(_, v []byte) bool {
		var x T
		if derr = json.Unmarshal(v, &x); derr != nil {
			return false
		}
		out = append(out, x)
		return true
	})
	if err == nil {
		err = derr
	}
	return out, err
}

// Domain returns a hosted domain.
func (d *Directory) Domain(name string) (Domain, bool, error) {
	return getJSON[Domain](d.state, key(tblDomain, strings.ToLower(name)))
}

// IsHosted reports whether the cluster receives mail for domain. A read
// error is not an answer: callers that must not guess use Domain.
func (d *Directory) IsHosted(domain string) bool {
	_, ok, err := d.Domain(domain)
	return ok && err == nil
}

// Domains lists hosted domains in name order.
func (d *Directory) Domains() ([]Domain, error) { return listJSON[Domain](d.state, tblDomain, "") }

// Account returns an account by address.
func (d *Directory) Account(address string) (Account, bool, error) {
	return getJSON[Account](d.state, key(tblAccount, Normalize(address)))
}

// Accounts lists accounts, of one domain when domain is not empty.
func (d *Directory) Accounts(domain string) ([]Account, error) {
	accs, err := listJSON[Account](d.state, tblAccount, "")
	if err != nil || domain == "" {
		return accs, err
	}
	domain = strings.ToLower(domain)
	out := accs[:0]
	for _, a := range accs {
		if DomainOf(a.Address) == domain {
			out = append(out, a)
		}
	}
	return out, nil
}

// Alias returns an alias by address.
func (d *Directory) Alias(address string) (Alias, bool, error) {
	return getJSON[Alias](d.state, key(tblAlias, Normalize(address)))
}

// Aliases lists all aliases.
func (d *Directory) Aliases() ([]Alias, error) { return listJSON[Alias](d.state, tblAlias, "") }

func (d *Directory) propose(ctx context.Context, t raftstore.CommandType, payload any) error {
	cmd, err := raftstore.Encode(t, payload)
	if err != nil {
		return err
	}
	return d.apply.Apply(ctx, cmd)
}
