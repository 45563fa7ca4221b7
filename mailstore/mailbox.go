package mailstore

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// MailboxInfo describes a mailbox: what IMAP LIST, STATUS and SELECT report.
type MailboxInfo struct {
	Name          string // full name, "/"-separated; INBOX spelled "INBOX"
	ID            uint64 // internal id; stable across RENAME
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	Messages      int
	Unseen        int
	Bytes         int64
	SpecialUse    string // RFC 6154 attribute such as `\Sent`, or ""
	Subscribed    bool
}

func (box *mailboxRecord) info(id uint64) MailboxInfo {
	return MailboxInfo{
		Name:          box.Name,
		ID:            id,
		UIDValidity:   box.UIDValidity,
		UIDNext:       box.UIDNext,
		HighestModSeq: box.HighestModSeq,
		Messages:      int(box.Messages),
		Unseen:        int(box.Unseen),
		Bytes:         box.Bytes,
		SpecialUse:    box.SpecialUse,
		Subscribed:    box.Subscribed,
	}
}

// scanMailboxes calls fn for every mailbox record of account.
func scanMailboxes(r reader, account string, fn func(id uint64, box *mailboxRecord) error) error {
	p := accountPrefix(tableMailbox, account)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return fmt.Errorf("list mailboxes: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		box := &mailboxRecord{}
		if err := box.decode(it.Value()); err != nil {
			return errors.Join(fmt.Errorf("mailbox %d: %w", idOfKey(it.Key()), err), it.Close())
		}
		if err := fn(idOfKey(it.Key()), box); err != nil {
			return errors.Join(err, it.Close())
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("list mailboxes: %w", err)
	}
	return nil
}

// lookupIn finds mailbox name (normalised) of account in r.
func lookupIn(r reader, account, name string) (uint64, *mailboxRecord, error) {
	id, ok, err := getUint64(r, nameKey(account, name))
	if err != nil {
		return 0, nil, fmt.Errorf("read mailbox name: %w", err)
	}
	if !ok {
		return 0, nil, fmt.Errorf("%w: %q", ErrNoMailbox, name)
	}
	box := &mailboxRecord{}
	if err := get(r, mailboxKey(account, id), box.decode); err != nil {
		return 0, nil, fmt.Errorf("read mailbox %d: %w", id, err)
	}
	return id, box, nil
}

// Mailboxes lists the account's mailboxes, INBOX first, then by name. An
// unknown account has none.
func (s *Store) Mailboxes(account string) ([]MailboxInfo, error) {
	a, err := normalizeAccount(account)
	if err != nil {
		return nil, fmt.Errorf("mailstore: mailboxes: %w", err)
	}
	var out []MailboxInfo
	err = s.view(a, func(r reader) error {
		return scanMailboxes(r, a, func(id uint64, box *mailboxRecord) error {
			out = append(out, box.info(id))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("mailstore: mailboxes of %s: %w", a, err)
	}
	slices.SortFunc(out, func(x, y MailboxInfo) int {
		if (x.Name == Inbox) != (y.Name == Inbox) {
			if x.Name == Inbox {
				return -1
			}
			return 1
		}
		return cmp.Compare(x.Name, y.Name)
	})
	return out, nil
}

// Mailbox returns one mailbox, or an error wrapping ErrNoMailbox.
func (s *Store) Mailbox(account, name string) (MailboxInfo, error) {
	a, n, err := normalizeBoth(account, name)
	if err != nil {
		return MailboxInfo{}, fmt.Errorf("mailstore: mailbox: %w", err)
	}
	var info MailboxInfo
	err = s.view(a, func(r reader) error {
		id, box, err := lookupIn(r, a, n)
		if err == nil {
			info = box.info(id)
		}
		return err
	})
	if err != nil {
		return MailboxInfo{}, fmt.Errorf("mailstore: mailbox %s %q: %w", a, n, err)
	}
	return info, nil
}

// CreateMailbox creates a mailbox, optionally with an RFC 6154 special-use
// attribute (RFC 6154 CREATE-SPECIAL-USE). New mailboxes are not
// subscribed. Parents are not created implicitly: the IMAP layer reports
// missing ones as \NonExistent. A new account gets its defaults first.
func (s *Store) CreateMailbox(account, name string, specialUse string) error {
	a, n, err := normalizeBoth(account, name)
	if err != nil {
		return fmt.Errorf("mailstore: create mailbox: %w", err)
	}
	use, err := normalizeSpecialUse(specialUse)
	if err != nil {
		return fmt.Errorf("mailstore: create mailbox %s %q: %w", a, n, err)
	}
	err = s.update(a, func(t *tx) error {
		if err := t.ensureAccount(); err != nil {
			return err
		}
		// The defaults just created (if any) are only in the batch, so
		// check them here as well as in the DB.
		for _, box := range t.boxes {
			if box.Name == n {
				return ErrMailboxExists
			}
		}
		if ok, err := t.exists(n); err != nil || ok {
			return cmp.Or(err, ErrMailboxExists)
		}
		_, _, err := t.createMailbox(n, use, false)
		return err
	})
	if err != nil {
		return fmt.Errorf("mailstore: create mailbox %s %q: %w", a, n, err)
	}
	return nil
}

// RenameMailbox renames from to to, together with its children ("from/x"
// becomes "to/x"). Mailbox ids, UIDs and UIDVALIDITY are kept, so no
// message is rewritten. Renaming INBOX follows RFC 3501: its messages
// (with its id and UIDVALIDITY) move to the new name, a new empty INBOX is
// created, and INBOX's children stay where they are.
func (s *Store) RenameMailbox(account, from, to string) error {
	a, f, err := normalizeBoth(account, from)
	if err != nil {
		return fmt.Errorf("mailstore: rename mailbox: %w", err)
	}
	dst, err := normalizeMailbox(to)
	if err != nil {
		return fmt.Errorf("mailstore: rename mailbox: %w", err)
	}
	if err := s.update(a, func(t *tx) error { return t.rename(f, dst) }); err != nil {
		return fmt.Errorf("mailstore: rename mailbox %s %q to %q: %w", a, f, dst, err)
	}
	return nil
}

func (t *tx) rename(from, to string) error {
	if to == from {
		return fmt.Errorf("%w: %q", ErrMailboxExists, to)
	}
	if from != Inbox && isChild(to, from) {
		return fmt.Errorf("%w: cannot rename a mailbox into itself", ErrBadName)
	}
	if _, _, err := t.lookup(from); err != nil {
		return err
	}
	boxes, err := t.allMailboxes()
	if err != nil {
		return err
	}
	moving := map[uint64]string{} // id -> new name
	for id, box := range boxes {
		switch {
		case box.Name == from:
			moving[id] = to
		case from != Inbox && isChild(box.Name, from):
			moving[id] = to + box.Name[len(from):]
		}
	}
	// The new names must not clash with any mailbox that stays put.
	staying := map[string]bool{}
	for id, box := range boxes {
		if _, ok := moving[id]; !ok {
			staying[box.Name] = true
		}
	}
	for _, name := range moving {
		if staying[name] {
			return fmt.Errorf("%w: %q", ErrMailboxExists, name)
		}
	}
	// Delete every old name before setting new ones: a new name may equal
	// an old one that is moving away (renaming "a/b" to "a" turns "a/b/b"
	// into "a/b"), and the later batch entry wins.
	for id := range moving {
		if err := t.del(nameKey(t.account, boxes[id].Name)); err != nil {
			return err
		}
	}
	for id, name := range moving {
		boxes[id].Name = name
		t.touch(id)
		if err := t.set(nameKey(t.account, name), appendUint64(nil, id)); err != nil {
			return err
		}
	}
	if from == Inbox {
		if _, _, err := t.createMailbox(Inbox, "", true); err != nil {
			return fmt.Errorf("recreate INBOX: %w", err)
		}
	}
	return nil
}

// DeleteMailbox deletes a mailbox and its messages. INBOX cannot be
// deleted. Children are left alone (RFC 9051 permits deleting a parent).
func (s *Store) DeleteMailbox(account, name string) error {
	a, n, err := normalizeBoth(account, name)
	if err != nil {
		return fmt.Errorf("mailstore: delete mailbox: %w", err)
	}
	if n == Inbox {
		return fmt.Errorf("mailstore: delete mailbox %s %q: %w", a, n, ErrDeleteInbox)
	}
	err = s.update(a, func(t *tx) error {
		id, box, err := t.lookup(n)
		if err != nil {
			return err
		}
		// Walk the messages only to release their bodies; the counters in
		// the mailbox record already hold the usage to subtract.
		err = t.eachMessage(id, nil, func(uid uint32, m *messageRecord) error {
			t.refs[m.BodyID]--
			return nil
		})
		if err != nil {
			return err
		}
		t.acct.Messages -= box.Messages
		t.acct.Bytes -= box.Bytes
		t.deleted[id] = true
		if err := t.delPrefix(messagePrefix(t.account, id)); err != nil {
			return err
		}
		if err := t.del(mailboxKey(t.account, id)); err != nil {
			return err
		}
		return t.del(nameKey(t.account, n))
	})
	if err != nil {
		return fmt.Errorf("mailstore: delete mailbox %s %q: %w", a, n, err)
	}
	return nil
}

// SetSubscribed sets the mailbox's subscription (IMAP SUBSCRIBE and
// UNSUBSCRIBE).
func (s *Store) SetSubscribed(account, name string, on bool) error {
	a, n, err := normalizeBoth(account, name)
	if err != nil {
		return fmt.Errorf("mailstore: subscribe: %w", err)
	}
	err = s.update(a, func(t *tx) error {
		id, box, err := t.lookup(n)
		if err != nil || box.Subscribed == on {
			return err
		}
		box.Subscribed = on
		t.touch(id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("mailstore: subscribe %s %q: %w", a, n, err)
	}
	return nil
}

// normalizeBoth normalises an account and a mailbox name.
func normalizeBoth(account, name string) (string, string, error) {
	a, err := normalizeAccount(account)
	if err != nil {
		return "", "", err
	}
	n, err := normalizeMailbox(name)
	if err != nil {
		return "", "", err
	}
	return a, n, nil
}
