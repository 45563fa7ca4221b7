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
	res, err := s.DeliverMany(account, []Delivery{{Key: key, Date: internalDate, Body: body, Quota: quota}})
	if err != nil {
		return 0, false, err
	}
	return res[0].UID, res[0].Duplicate, res[0].Err
}

// Delivery is one message for DeliverMany.
type Delivery struct {
	Key   string    // idempotency key (queue id + "/" + recipient)
	Date  time.Time // internal date
	Body  []byte
	Quota int64 // bytes the account may use, 0: no limit
	Junk  bool  // into the account's Junk mailbox instead of INBOX
}

// DeliveryResult is the outcome of one Delivery.
type DeliveryResult struct {
	UID       uint32
	Duplicate bool
	Err       error // per message: ErrOverQuota, ErrBadArgument
}

// DeliverMany delivers several messages to one account's INBOX in one
// transaction, so they share one synced commit: deliveries to a busy
// mailbox are grouped instead of waiting for each other's fsync. Each
// message is checked (idempotency, quota) as DeliverWithin does, in order;
// a message refused on its own does not stop the others. The error is for
// the whole batch (nothing stored).
func (s *Store) DeliverMany(account string, ds []Delivery) ([]DeliveryResult, error) {
	a, err := normalizeAccount(account)
	if err != nil {
		return nil, fmt.Errorf("mailstore: deliver: %w", err)
	}
	res := make([]DeliveryResult, len(ds))
	err = s.update(a, func(t *tx) error {
		for i, d := range ds {
			r := &res[i]
			*r = DeliveryResult{}
			if d.Key == "" || len(d.Key) > maxKeyLen {
				r.Err = fmt.Errorf("mailstore: deliver to %s: %w: key of %d bytes", a, ErrBadArgument, len(d.Key))
				continue
			}
			var rec dedupRecord
			err := get(t.batch, dedupKey(a, d.Key), rec.decode)
			if err == nil {
				r.UID, r.Duplicate = rec.UID, true
				continue
			}
			if !errors.Is(err, pebble.ErrNotFound) {
				return fmt.Errorf("read dedup record: %w", err)
			}
			if d.Quota > 0 && t.acct.Bytes+int64(len(d.Body)) > d.Quota {
				r.Err = fmt.Errorf("mailstore: deliver to %s: %w: %d of %d bytes used, message of %d", a, ErrOverQuota, t.acct.Bytes, d.Quota, len(d.Body))
				continue
			}
			id, box, err := t.deliveryBox(d.Junk)
			if err != nil {
				return err
			}
			if r.UID, err = t.appendNew(id, box, nil, d.Date, d.Body); err != nil {
				return err
			}
			rec = dedupRecord{UID: r.UID, Created: t.s.now().Unix()}
			if err := t.set(dedupKey(a, d.Key), rec.encode()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mailstore: deliver to %s: %w", a, err)
	}
	return res, nil
}

// deliveryBox is INBOX, or for junk the mailbox with the \Junk special
// use (whatever the user renamed it to), else the one named Junk, created
// with that use if the user deleted it.
func (t *tx) deliveryBox(junk bool) (uint64, *mailboxRecord, error) {
	id, box, err := t.inbox() // creates a new account's defaults
	if !junk || err != nil {
		return id, box, err
	}
	boxes, err := t.allMailboxes()
	if err != nil {
		return 0, nil, err
	}
	// The lowest id wins should several qualify: the same box every time.
	var used, named uint64
	for id, box := range boxes {
		switch {
		case t.deleted[id]:
		case box.SpecialUse == `\Junk` && (used == 0 || id < used):
			used = id
		case box.Name == "Junk":
			named = id
		}
	}
	if used == 0 {
		used = named
	}
	if used != 0 {
		return used, boxes[used], nil
	}
	return t.createMailbox("Junk", `\Junk`, true)
}
