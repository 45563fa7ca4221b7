package mailstore

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Message is a message's metadata, as IMAP FETCH reports it.
type Message struct {
	UID          uint32
	ModSeq       uint64 // RFC 7162 MODSEQ: bumped whenever the message changes
	Flags        []string
	InternalDate time.Time
	Size         int64 // RFC822.SIZE: length of the stored body in bytes
}

func (m *messageRecord) message(uid uint32) Message {
	return Message{UID: uid, ModSeq: m.ModSeq, Flags: m.Flags, InternalDate: m.internalDate(), Size: m.Size}
}

// eachMessage calls fn for the messages of mailbox id in UID order: all of
// them if uids is nil, else those of uids that exist (sorted and
// deduplicated by the caller via sortedUIDs). Dense UID runs are walked
// with Next rather than re-seeking.
func eachMessage(r reader, account string, id uint64, uids []uint32, fn func(uid uint32, m *messageRecord) error) error {
	p := messagePrefix(account, id)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return fmt.Errorf("list messages: %w", err)
	}
	visit := func() error {
		m := &messageRecord{}
		if err := m.decode(it.Value()); err != nil {
			return fmt.Errorf("message %d: %w", uidOfKey(it.Key()), err)
		}
		return fn(uidOfKey(it.Key()), m)
	}
	if uids == nil {
		for it.First(); it.Valid() && err == nil; it.Next() {
			err = visit()
		}
	} else {
		valid, seeked := false, false
		for _, uid := range uids {
			if !seeked || (valid && uidOfKey(it.Key()) < uid) {
				valid, seeked = it.SeekGE(messageKey(account, id, uid)), true
			}
			if !valid {
				break
			}
			if uidOfKey(it.Key()) == uid {
				if err = visit(); err != nil {
					break
				}
				valid = it.Next()
			}
		}
	}
	if err := errors.Join(err, it.Error(), it.Close()); err != nil {
		return fmt.Errorf("list messages: %w", err)
	}
	return nil
}

func (t *tx) eachMessage(id uint64, uids []uint32, fn func(uid uint32, m *messageRecord) error) error {
	return eachMessage(t.batch, t.account, id, uids, fn)
}

// sortedUIDs returns uids sorted and without duplicates or zeros. It maps
// nil to an empty non-nil slice, because eachMessage reads nil as "all".
func sortedUIDs(uids []uint32) []uint32 {
	out := slices.Clone(uids)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > 0 && out[0] == 0 {
		out = out[1:]
	}
	if out == nil {
		out = []uint32{}
	}
	return out
}

// Append adds a message to a mailbox (IMAP APPEND) and returns the
// mailbox's UIDVALIDITY and the new UID (for APPENDUID). A zero
// internalDate means now.
func (s *Store) Append(account, mailbox string, flags []string, internalDate time.Time, body []byte) (uidValidity, uid uint32, err error) {
	a, n, err := normalizeBoth(account, mailbox)
	if err != nil {
		return 0, 0, fmt.Errorf("mailstore: append: %w", err)
	}
	fl, err := normalizeFlags(flags)
	if err != nil {
		return 0, 0, fmt.Errorf("mailstore: append to %s %q: %w", a, n, err)
	}
	err = s.update(a, func(t *tx) error {
		id, box, err := t.lookup(n)
		if err != nil {
			return err
		}
		uidValidity = box.UIDValidity
		uid, err = t.appendNew(id, box, fl, internalDate, body)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("mailstore: append to %s %q: %w", a, n, err)
	}
	return uidValidity, uid, nil
}

// appendNew stores body as a new message in mailbox id.
func (t *tx) appendNew(id uint64, box *mailboxRecord, flags []string, date time.Time, body []byte) (uint32, error) {
	if date.IsZero() {
		date = t.s.now()
	}
	bodyID, err := t.putBody(body)
	if err != nil {
		return 0, err
	}
	m := &messageRecord{ModSeq: t.bumpModSeq(id, box), Size: int64(len(body)), BodyID: bodyID, Flags: flags}
	m.setInternalDate(date)
	return t.addMessage(id, box, m)
}

// Messages lists a mailbox's messages in UID order.
func (s *Store) Messages(account, mailbox string) ([]Message, error) {
	a, n, err := normalizeBoth(account, mailbox)
	if err != nil {
		return nil, fmt.Errorf("mailstore: messages: %w", err)
	}
	var out []Message
	err = s.view(a, func(r reader) error {
		id, box, err := lookupIn(r, a, n)
		if err != nil {
			return err
		}
		out = make([]Message, 0, box.Messages)
		return eachMessage(r, a, id, nil, func(uid uint32, m *messageRecord) error {
			out = append(out, m.message(uid))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("mailstore: messages of %s %q: %w", a, n, err)
	}
	return out, nil
}

// Message returns one message's metadata, or an error wrapping ErrNoMessage.
func (s *Store) Message(account, mailbox string, uid uint32) (Message, error) {
	var out Message
	err := s.withMessage(account, mailbox, uid, func(r reader, a string, m *messageRecord) error {
		out = m.message(uid)
		return nil
	})
	if err != nil {
		return Message{}, fmt.Errorf("mailstore: message: %w", err)
	}
	return out, nil
}

// Body returns a message's full content.
func (s *Store) Body(account, mailbox string, uid uint32) ([]byte, error) {
	var out []byte
	err := s.withMessage(account, mailbox, uid, func(r reader, a string, m *messageRecord) (err error) {
		out, err = readBody(r, a, m.BodyID, m.Size)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mailstore: body: %w", err)
	}
	return out, nil
}

// withMessage looks up message uid in a snapshot and calls fn with it.
func (s *Store) withMessage(account, mailbox string, uid uint32, fn func(r reader, a string, m *messageRecord) error) error {
	a, n, err := normalizeBoth(account, mailbox)
	if err != nil {
		return err
	}
	err = s.view(a, func(r reader) error {
		id, _, err := lookupIn(r, a, n)
		if err != nil {
			return err
		}
		m := &messageRecord{}
		err = get(r, messageKey(a, id, uid), m.decode)
		if errors.Is(err, pebble.ErrNotFound) {
			return fmt.Errorf("%w: uid %d", ErrNoMessage, uid)
		}
		if err != nil {
			return fmt.Errorf("read message %d: %w", uid, err)
		}
		return fn(r, a, m)
	})
	if err != nil {
		return fmt.Errorf("%s %q: %w", a, n, err)
	}
	return nil
}
