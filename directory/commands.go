package directory

import (
	"context"
	"encoding/json"
	"strings"

	"clustermail/raftstore"
)

// Register adds the directory's command handlers to the state machine.
func Register(f *raftstore.FSM) {
	f.Register(cmdDomainAdd, applyDomainAdd)
	f.Register(cmdDomainRemove, applyDomainRemove)
	f.Register(cmdAccountAdd, applyAccountAdd)
	f.Register(cmdAccountPassword, applyAccountPassword)
	f.Register(cmdAccountRemove, applyAccountRemove)
	f.Register(cmdAliasSet, applyAliasSet)
	f.Register(cmdAliasRemove, applyAliasRemove)
	f.Register(cmdDKIMKeyAdd, applyDKIMKeyAdd)
	f.Register(cmdDKIMKeyRemove, applyDKIMKeyRemove)
}

func put(tx *raftstore.Tx, k []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own types always encode
	}
	return tx.Set(k, b)
}

func exists(tx *raftstore.Tx, k []byte) bool {
	_, ok, err := tx.Get(k)
	if err != nil {
		panic(err) // a state read failing mid-apply cannot be answered deterministically
	}
	return ok
}

func applyDomainAdd(tx *raftstore.Tx, p []byte) error {
	var d Domain
	raftstore.Decode(p, &d)
	k := key(tblDomain, d.Name)
	if exists(tx, k) {
		return raftstore.Errorf(raftstore.CodeConflict, "domain %s already exists", d.Name)
	}
	return put(tx, k, d)
}

func applyDomainRemove(tx *raftstore.Tx, p []byte) error {
	var d Domain
	raftstore.Decode(p, &d)
	k := key(tblDomain, d.Name)
	if !exists(tx, k) {
		return raftstore.Errorf(raftstore.CodeNotFound, "domain %s does not exist", d.Name)
	}
	if n := countInDomain(tx, d.Name); n > 0 {
		return raftstore.Errorf(raftstore.CodeConflict, "domain %s still has %d accounts or aliases: remove them first", d.Name, n)
	}
	if n := countDKIMKeys(tx, d.Name); n > 0 {
		// A private key is not something to drop as a side effect.
		return raftstore.Errorf(raftstore.CodeConflict, "domain %s still has %d DKIM keys: remove them first (clustermail dkim remove)", d.Name, n)
	}
	return tx.Delete(k)
}

func countInDomain(r raftstore.Reader, domain string) int {
	n := 0
	for _, tbl := range []byte{tblAccount, tblAlias} {
		_ = r.Iter([]byte{tbl}, []byte{tbl + 1}, func(k, _ []byte) bool {
			if strings.HasSuffix(string(k[1:]), "@"+domain) {
				n++
			}
			return true
		})
	}
	return n
}

func applyAccountAdd(tx *raftstore.Tx, p []byte) error {
	var a Account
	raftstore.Decode(p, &a)
	if !exists(tx, key(tblDomain, DomainOf(a.Address))) {
		return raftstore.Errorf(raftstore.CodeNotFound, "domain %s is not hosted: add it first", DomainOf(a.Address))
	}
	k := key(tblAccount, a.Address)
	if exists(tx, k) {
		return raftstore.Errorf(raftstore.CodeConflict, "account %s already exists", a.Address)
	}
	if exists(tx, key(tblAlias, a.Address)) {
		return raftstore.Errorf(raftstore.CodeConflict, "%s is an alias", a.Address)
	}
	return put(tx, k, a)
}

func applyAccountPassword(tx *raftstore.Tx, p []byte) error {
	var in Account
	raftstore.Decode(p, &in)
	k := key(tblAccount, in.Address)
	a, ok, err := getJSON[Account](tx, k)
	if err != nil {
		panic(err)
	}
	if !ok {
		return raftstore.Errorf(raftstore.CodeNotFound, "account %s does not exist", in.Address)
	}
	a.Hash = in.Hash
	return put(tx, k, a)
}

func applyAccountRemove(tx *raftstore.Tx, p []byte) error {
	var a Account
	raftstore.Decode(p, &a)
	k := key(tblAccount, a.Address)
	if !exists(tx, k) {
		return raftstore.Errorf(raftstore.CodeNotFound, "account %s does not exist", a.Address)
	}
	return tx.Delete(k)
}

func applyAliasSet(tx *raftstore.Tx, p []byte) error {
	var a Alias
	raftstore.Decode(p, &a)
	if !exists(tx, key(tblDomain, DomainOf(a.Alias))) {
		return raftstore.Errorf(raftstore.CodeNotFound, "domain %s is not hosted: add it first", DomainOf(a.Alias))
	}
	if exists(tx, key(tblAccount, a.Alias)) {
		return raftstore.Errorf(raftstore.CodeConflict, "%s is an account", a.Alias)
	}
	return put(tx, key(tblAlias, a.Alias), a)
}

func applyAliasRemove(tx *raftstore.Tx, p []byte) error {
	var a Alias
	raftstore.Decode(p, &a)
	k := key(tblAlias, a.Alias)
	if !exists(tx, k) {
		return raftstore.Errorf(raftstore.CodeNotFound, "alias %s does not exist", a.Alias)
	}
	return tx.Delete(k)
}

// AddDomain makes the cluster host a domain.
func (d *Directory) AddDomain(ctx context.Context, name string) (Domain, error) {
	dom := Domain{Name: strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), ".")), Created: d.now().UTC()}
	if err := ValidateDomain(dom.Name); err != nil {
		return Domain{}, err
	}
	return dom, d.propose(ctx, cmdDomainAdd, dom)
}

// RemoveDomain stops hosting a domain that has no accounts or aliases.
func (d *Directory) RemoveDomain(ctx context.Context, name string) error {
	return d.propose(ctx, cmdDomainRemove, Domain{Name: strings.ToLower(name)})
}

// NewAccount describes an account to create. Node must already be chosen
// (see Place): the state machine cannot know which nodes are alive.
type NewAccount struct {
	Address  string
	Password string
	Quota    int64
	Node     string
}

// AddAccount creates an account; the password is hashed here, on the
// proposer, so only the hash enters the log.
func (d *Directory) AddAccount(ctx context.Context, n NewAccount) (Account, error) {
	addr := Normalize(n.Address)
	if err := ValidateAddress(addr); err != nil {
		return Account{}, err
	}
	if n.Quota < 0 {
		return Account{}, raftstore.Errorf(raftstore.CodeInvalid, "quota must not be negative")
	}
	if n.Node == "" {
		return Account{}, raftstore.Errorf(raftstore.CodeInvalid, "no node to place %s on", addr)
	}
	hash, err := HashPassword(n.Password)
	if err != nil {
		return Account{}, raftstore.Errorf(raftstore.CodeInvalid, "password: %v", err)
	}
	a := Account{Address: addr, Hash: hash, Quota: n.Quota, Node: n.Node, Created: d.now().UTC()}
	return a, d.propose(ctx, cmdAccountAdd, a)
}

// SetPassword replaces an account's password.
func (d *Directory) SetPassword(ctx context.Context, address, password string) error {
	hash, err := HashPassword(password)
	if err != nil {
		return raftstore.Errorf(raftstore.CodeInvalid, "password: %v", err)
	}
	return d.propose(ctx, cmdAccountPassword, Account{Address: Normalize(address), Hash: hash})
}

// RemoveAccount deletes an account from the directory. Its stored mail is
// left on the owner node for the operator to export or delete.
func (d *Directory) RemoveAccount(ctx context.Context, address string) error {
	return d.propose(ctx, cmdAccountRemove, Account{Address: Normalize(address)})
}

// SetAlias creates or replaces an alias.
func (d *Directory) SetAlias(ctx context.Context, alias string, targets []string) (Alias, error) {
	a := Alias{Alias: Normalize(alias), Created: d.now().UTC()}
	if err := ValidateAddress(a.Alias); err != nil {
		return Alias{}, err
	}
	if len(targets) == 0 {
		return Alias{}, raftstore.Errorf(raftstore.CodeInvalid, "alias %s needs at least one target", a.Alias)
	}
	seen := map[string]bool{}
	for _, t := range targets {
		t = Normalize(t)
		if err := ValidateAddress(t); err != nil {
			return Alias{}, err
		}
		if t == a.Alias {
			return Alias{}, raftstore.Errorf(raftstore.CodeInvalid, "alias %s cannot target itself", a.Alias)
		}
		if !seen[t] {
			seen[t] = true
			a.Targets = append(a.Targets, t)
		}
	}
	return a, d.propose(ctx, cmdAliasSet, a)
}

// RemoveAlias deletes an alias.
func (d *Directory) RemoveAlias(ctx context.Context, alias string) error {
	return d.propose(ctx, cmdAliasRemove, Alias{Alias: Normalize(alias)})
}

// Authenticate checks an account's password.
func (d *Directory) Authenticate(address, password string) (Account, bool) {
	a, ok, err := d.Account(address)
	if err != nil || !ok {
		// Spend the same time as a real check so timing does not reveal
		// which accounts exist.
		CheckPassword(dummyHash, password)
		return Account{}, false
	}
	return a, CheckPassword(a.Hash, password)
}

var dummyHash, _ = HashPassword("clustermail-timing-equalizer")
