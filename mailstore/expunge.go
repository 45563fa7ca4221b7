package mailstore

import "fmt"

// Expunge removes the mailbox's messages flagged \Deleted, or only those
// among uids when uids is non-nil (IMAP UID EXPUNGE). It returns the
// expunged UIDs in ascending order and bumps HIGHESTMODSEQ if any went.
func (s *Store) Expunge(account, mailbox string, uids []uint32) ([]uint32, error) {
	a, n, err := normalizeBoth(account, mailbox)
	if err != nil {
		return nil, fmt.Errorf("mailstore: expunge: %w", err)
	}
	if uids != nil {
		uids = sortedUIDs(uids)
	}
	var expunged []uint32
	err = s.update(a, func(t *tx) error {
		expunged = nil
		id, box, err := t.lookup(n)
		if err != nil {
			return err
		}
		err = t.eachMessage(id, uids, func(uid uint32, m *messageRecord) error {
			if !hasFlag(m.Flags, flagDeleted) {
				return nil
			}
			expunged = append(expunged, uid)
			return t.removeMessage(id, box, uid, m)
		})
		if err != nil || len(expunged) == 0 {
			return err
		}
		t.bumpModSeq(id, box)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mailstore: expunge %s %q: %w", a, n, err)
	}
	return expunged, nil
}
