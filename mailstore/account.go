package mailstore

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// defaultMailboxes are created for every account, all subscribed.
var defaultMailboxes = []struct{ name, specialUse string }{
	{Inbox, ""},
	{"Sent", `\Sent`},
	{"Drafts", `\Drafts`},
	{"Trash", `\Trash`},
	{"Junk", `\Junk`},
	{"Archive", `\Archive`},
}

// EnsureAccount creates the account's default mailboxes (INBOX, Sent,
// Drafts, Trash, Junk, Archive, all subscribed, with their SPECIAL-USE
// attributes) where missing. A default counts as present if a mailbox of
// that name or with that special use exists, so a user who renamed "Sent"
// does not get a second one. Idempotent.
func (s *Store) EnsureAccount(account string) error {
	a, err := normalizeAccount(account)
	if err != nil {
		return fmt.Errorf("mailstore: ensure account: %w", err)
	}
	if err := s.update(a, (*tx).ensureDefaults); err != nil {
		return fmt.Errorf("mailstore: ensure account %s: %w", a, err)
	}
	return nil
}

// ensureAccount creates the default mailboxes if the account is new. Writes
// that need an account (Deliver, CreateMailbox) call it so that an existing
// account always has had its defaults created once.
func (t *tx) ensureAccount() error {
	if t.acctExists {
		return nil
	}
	return t.ensureDefaults()
}

func (t *tx) ensureDefaults() error {
	boxes, err := t.allMailboxes()
	if err != nil {
		return err
	}
	names, uses := map[string]bool{}, map[string]bool{}
	for _, box := range boxes {
		names[box.Name] = true
		uses[box.SpecialUse] = true
	}
	for _, d := range defaultMailboxes {
		if names[d.name] || (d.specialUse != "" && uses[d.specialUse]) {
			continue
		}
		if _, _, err := t.createMailbox(d.name, d.specialUse, true); err != nil {
			return fmt.Errorf("create %s: %w", d.name, err)
		}
	}
	if !t.acctExists {
		t.wrote = true // persist the account record even if nothing else changed
	}
	return nil
}

// inbox returns the account's INBOX, creating the account's defaults if the
// account is new (and INBOX alone should it somehow be missing).
func (t *tx) inbox() (uint64, *mailboxRecord, error) {
	if err := t.ensureAccount(); err != nil {
		return 0, nil, err
	}
	id, box, err := t.lookup(Inbox)
	if errors.Is(err, ErrNoMailbox) {
		return t.createMailbox(Inbox, "", true)
	}
	return id, box, err
}

// DeleteAccount removes every mailbox, message, body and delivery record of
// the account. Deleting an unknown account is not an error.
func (s *Store) DeleteAccount(account string) error {
	a, err := normalizeAccount(account)
	if err != nil {
		return fmt.Errorf("mailstore: delete account: %w", err)
	}
	if err := s.deleteAccount(a); err != nil {
		return fmt.Errorf("mailstore: delete account %s: %w", a, err)
	}
	return nil
}

func (s *Store) deleteAccount(a string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	mu := s.lockFor(a)
	mu.Lock()
	defer mu.Unlock()

	var acct accountRecord
	err := get(s.db, accountKey(a), acct.decode)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read account record: %w", err)
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, table := range accountTables {
		p := accountPrefix(table, a)
		if err := b.DeleteRange(p, prefixEnd(p), nil); err != nil {
			return err
		}
	}
	// Raise the store floor to this account's last UIDVALIDITY in the same
	// batch, so a re-created account continues above it. floorMu keeps
	// concurrent deletions from persisting floors out of order.
	s.floorMu.Lock()
	defer s.floorMu.Unlock()
	floor := max(s.floor.Load(), acct.LastUIDValidity)
	if err := b.Set(metaKey(metaUIDValidityFloor), appendUint64(nil, uint64(floor)), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	s.floor.Store(floor)
	s.subs.signal(a)
	return nil
}

// Usage returns the account's total number of messages and their bytes
// across all mailboxes, for quota checks. An unknown account uses nothing.
func (s *Store) Usage(account string) (messages int, bytes int64, err error) {
	a, err := normalizeAccount(account)
	if err != nil {
		return 0, 0, fmt.Errorf("mailstore: usage: %w", err)
	}
	var acct accountRecord
	err = s.view(a, func(r reader) error {
		err := get(r, accountKey(a), acct.decode)
		if errors.Is(err, pebble.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("mailstore: usage %s: %w", a, err)
	}
	return int(acct.Messages), acct.Bytes, nil
}
