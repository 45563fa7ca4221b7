package mailstore

import "fmt"

// Copy copies the messages of uids (those that exist) from one mailbox to
// another, keeping flags and internal date; bodies are shared, not
// duplicated. It returns the destination's UIDVALIDITY and the matching
// source and destination UIDs, ascending, as RFC 4315 COPYUID reports them.
// A missing destination yields ErrNoMailbox (IMAP answers TRYCREATE).
func (s *Store) Copy(account, from string, uids []uint32, to string) (uidValidity uint32, srcUIDs, dstUIDs []uint32, err error) {
	return s.transfer("copy", account, from, uids, to, false)
}

// Move is Copy followed by removing the originals (RFC 6851), in one atomic
// commit. The source's HIGHESTMODSEQ is bumped for the removal.
func (s *Store) Move(account, from string, uids []uint32, to string) (uidValidity uint32, srcUIDs, dstUIDs []uint32, err error) {
	return s.transfer("move", account, from, uids, to, true)
}

func (s *Store) transfer(op, account, from string, uids []uint32, to string, move bool) (uidValidity uint32, srcUIDs, dstUIDs []uint32, err error) {
	a, f, err := normalizeBoth(account, from)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("mailstore: %s: %w", op, err)
	}
	dst, err := normalizeMailbox(to)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("mailstore: %s: %w", op, err)
	}
	err = s.update(a, func(t *tx) error {
		srcUIDs, dstUIDs = nil, nil
		srcID, srcBox, err := t.lookup(f)
		if err != nil {
			return err
		}
		dstID, dstBox, err := t.lookup(dst)
		if err != nil {
			return err
		}
		uidValidity = dstBox.UIDValidity
		type found struct {
			uid uint32
			m   *messageRecord
		}
		var msgs []found
		err = t.eachMessage(srcID, sortedUIDs(uids), func(uid uint32, m *messageRecord) error {
			msgs = append(msgs, found{uid, m})
			return nil
		})
		if err != nil || len(msgs) == 0 {
			return err
		}
		modSeq := t.bumpModSeq(dstID, dstBox)
		for _, x := range msgs {
			c := *x.m
			c.ModSeq = modSeq
			uid, err := t.addMessage(dstID, dstBox, &c)
			if err != nil {
				return err
			}
			srcUIDs = append(srcUIDs, x.uid)
			dstUIDs = append(dstUIDs, uid)
		}
		if !move {
			return nil
		}
		for _, x := range msgs {
			if err := t.removeMessage(srcID, srcBox, x.uid, x.m); err != nil {
				return err
			}
		}
		t.bumpModSeq(srcID, srcBox)
		return nil
	})
	if err != nil {
		return 0, nil, nil, fmt.Errorf("mailstore: %s %s %q to %q: %w", op, a, f, dst, err)
	}
	return uidValidity, srcUIDs, dstUIDs, nil
}
