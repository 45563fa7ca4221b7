package mailstore

import (
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Deliver appends body to the account's INBOX, creating the account (with
// its default mailboxes) if it is new. It is idempotent per key (the
// caller passes queueID+"/"+recipient): a repeated call with a key already
// delivered stores nothing and returns the first delivery's UID with
// duplicate set. The dedup record and the message commit in one synced
// batch, so a crash can never keep one without the other.
func (s *Store) Deliver(account, key string, internalDate time.Time, body []byte) (uid uint32, duplicate bool, err error) {
	return s.DeliverWithin(account, key, internalDate, body, 0)
}

// DeliverWithin is Deliver with a quota: a new message that would bring the
// account's usage above quota bytes (0: no limit) is refused with
// ErrOverQuota. The check runs in the same transaction as the append, after
// the idempotency check, so a repeated delivery of a message already stored
// is a duplicate, never over quota, and concurrent deliveries cannot
// overshoot together.
func (s *Store) DeliverWithin(account, key string, internalDate time.Time, body []byte, quota int64) (uid uint32, duplicate bool, err error) {
	a, err := normalizeAccount(account)
	if err != nil {
		return 0, false, fmt.Errorf("mailstore: deliver: %w", err)
	}
	if key == "" || len(key) > maxKeyLen {
		return 0, false, fmt.Errorf("mailstore: deliver to %s: %w: key of %d bytes", a, ErrBadArgument, len(key))
	}
	err = s.update(a, func(t *tx) error {
		var d dedupRecord
		err := get(t.batch, dedupKey(a, key), d.decode)
		if err == nil {
			uid, duplicate = d.UID, true
			return nil
		}
		if !errors.Is(err, pebble.ErrNotFound) {
			return fmt.Errorf("read dedup record: %w", err)
		}
		if quota > 0 && t.acct.Bytes+int64(len(body)) > quota {
			return fmt.Errorf("%w: %d of %d bytes used, message of %d", ErrOverQuota, t.acct.Bytes, quota, len(body))
		}
		id, box, err := t.inbox()
		if err != nil {
			return err
		}
		if uid, err = t.appendNew(id, box, nil, internalDate, body); err != nil {
			return err
		}
		d = dedupRecord{UID: uid, Created: t.s.now().Unix()}
		return t.set(dedupKey(a, key), d.encode())
	})
	if err != nil {
		return 0, false, fmt.Errorf("mailstore: deliver to %s: %w", a, err)
	}
	return uid, duplicate, nil
}
