package directory

import "fmt"

// maxAliasDepth bounds alias chains so a loop cannot hang RCPT.
const maxAliasDepth = 10

// Resolution is what an address means to the cluster.
type Resolution struct {
	Hosted   bool      // the domain is hosted here
	Accounts []Account // final mailboxes (aliases expanded, deduplicated)
	Remote   []string  // addresses in other domains that aliases forward to
}

// Resolve expands an address to the accounts that receive its mail. An
// address in a domain the cluster does not host resolves to Hosted=false;
// an unknown user of a hosted domain to Hosted=true with no accounts.
func (d *Directory) Resolve(address string) (Resolution, error) {
	addr := Normalize(address)
	if _, hosted, err := d.Domain(DomainOf(addr)); err != nil {
		return Resolution{}, err
	} else if !hosted {
		return Resolution{}, nil
	}
	res := Resolution{Hosted: true}
	seen := map[string]bool{}
	if err := d.expand(addr, 0, seen, &res); err != nil {
		return Resolution{}, err
	}
	return res, nil
}

func (d *Directory) expand(addr string, depth int, seen map[string]bool, res *Resolution) error {
	if seen[addr] {
		return nil
	}
	seen[addr] = true
	if depth > maxAliasDepth {
		return fmt.Errorf("alias chain from %s is deeper than %d", addr, maxAliasDepth)
	}
	if depth > 0 {
		_, hosted, err := d.Domain(DomainOf(addr))
		if err != nil {
			return err
		}
		if !hosted {
			res.Remote = append(res.Remote, addr)
			return nil
		}
	}
	acc, ok, err := d.Account(addr)
	if err != nil {
		return err
	}
	if ok {
		res.Accounts = append(res.Accounts, acc)
		return nil
	}
	al, ok, err := d.Alias(addr)
	if err != nil || !ok {
		return err // unknown: contributes nothing
	}
	for _, t := range al.Targets {
		if err := d.expand(t, depth+1, seen, res); err != nil {
			return err
		}
	}
	return nil
}
