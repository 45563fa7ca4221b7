package mailstore

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// tx is one read-modify-write of an account. It runs under the account's
// lock, so reading straight from the DB sees the latest committed state;
// its writes go to a batch that is committed with pebble.Sync.
//
// Records that several steps touch (the account, mailboxes, body reference
// counts) are cached here and written once at commit, so an operation that
// modifies the same one repeatedly cannot read a stale value from the DB.
type tx struct {
	s       *Store
	account string
	batch   *pebble.Batch
	wrote   bool // something was put in the batch

	acct       accountRecord
	acctExists bool

	boxes   map[uint64]*mailboxRecord // loaded mailboxes
	touched map[uint64]bool           // mailboxes to write at commit
	deleted map[uint64]bool           // mailboxes removed in this tx
	refs    map[uint64]int64          // body reference count deltas
}

func (s *Store) begin(account string) (*tx, error) {
	t := &tx{
		s:       s,
		account: account,
		batch:   s.db.NewIndexedBatch(),
		boxes:   map[uint64]*mailboxRecord{},
		touched: map[uint64]bool{},
		deleted: map[uint64]bool{},
		refs:    map[uint64]int64{},
	}
	err := get(s.db, accountKey(account), t.acct.decode)
	switch {
	case err == nil:
		t.acctExists = true
	case errors.Is(err, pebble.ErrNotFound):
		t.acct = accountRecord{NextMailboxID: 1, NextBodyID: 1}
	default:
		t.batch.Close()
		return nil, fmt.Errorf("read account record: %w", err)
	}
	return t, nil
}

// dirty reports whether the tx has anything to commit.
func (t *tx) dirty() bool { return t.wrote || len(t.touched) > 0 || len(t.refs) > 0 }

// set and del put a write into the batch.
func (t *tx) set(key, value []byte) error {
	t.wrote = true
	return t.batch.Set(key, value, nil)
}

func (t *tx) del(key []byte) error {
	t.wrote = true
	return t.batch.Delete(key, nil)
}

func (t *tx) delPrefix(prefix []byte) error {
	t.wrote = true
	return t.batch.DeleteRange(prefix, prefixEnd(prefix), nil)
}

// commit writes the cached records and applies the batch durably.
func (t *tx) commit() error {
	for id := range t.touched {
		if t.deleted[id] {
			continue
		}
		if err := t.batch.Set(mailboxKey(t.account, id), t.boxes[id].encode(), nil); err != nil {
			return fmt.Errorf("write mailbox record: %w", err)
		}
	}
	for id, delta := range t.refs {
		if err := t.applyRef(id, delta); err != nil {
			return err
		}
	}
	// The account record is small, so it is rewritten with every commit
	// rather than tracking whether its allocators or usage moved.
	if err := t.batch.Set(accountKey(t.account), t.acct.encode(), nil); err != nil {
		return fmt.Errorf("write account record: %w", err)
	}
	if err := t.batch.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// applyRef adjusts a body's reference count, deleting the body when no
// message refers to it any more.
func (t *tx) applyRef(id uint64, delta int64) error {
	if delta == 0 {
		return nil
	}
	cur, _, err := getUint64(t.s.db, bodyRefKey(t.account, id))
	if err != nil {
		return fmt.Errorf("read body refcount: %w", err)
	}
	n := int64(cur) + delta
	if n > 0 {
		return t.batch.Set(bodyRefKey(t.account, id), appendUint64(nil, uint64(n)), nil)
	}
	if err := t.batch.Delete(bodyRefKey(t.account, id), nil); err != nil {
		return err
	}
	p := bodyPrefix(t.account, id)
	return t.batch.DeleteRange(p, prefixEnd(p), nil)
}

// lookup returns the id of the mailbox called name (already normalised).
func (t *tx) lookup(name string) (uint64, *mailboxRecord, error) {
	id, ok, err := getUint64(t.batch, nameKey(t.account, name))
	if err != nil {
		return 0, nil, fmt.Errorf("read mailbox name: %w", err)
	}
	if !ok {
		return 0, nil, fmt.Errorf("%w: %q", ErrNoMailbox, name)
	}
	box, err := t.mailbox(id)
	return id, box, err
}

// exists reports whether a mailbox called name exists.
func (t *tx) exists(name string) (bool, error) {
	_, ok, err := getUint64(t.batch, nameKey(t.account, name))
	if err != nil {
		return false, fmt.Errorf("read mailbox name: %w", err)
	}
	return ok, nil
}

// mailbox returns the (cached) record of mailbox id.
func (t *tx) mailbox(id uint64) (*mailboxRecord, error) {
	if box, ok := t.boxes[id]; ok {
		return box, nil
	}
	box := &mailboxRecord{}
	if err := get(t.batch, mailboxKey(t.account, id), box.decode); err != nil {
		return nil, fmt.Errorf("read mailbox %d: %w", id, err)
	}
	t.boxes[id] = box
	return box, nil
}

// touch marks mailbox id to be written at commit.
func (t *tx) touch(id uint64) { t.touched[id] = true }

// allMailboxes loads every mailbox of the account.
func (t *tx) allMailboxes() (map[uint64]*mailboxRecord, error) {
	err := scanMailboxes(t.batch, t.account, func(id uint64, box *mailboxRecord) error {
		if _, ok := t.boxes[id]; !ok {
			t.boxes[id] = box
		}
		return nil
	})
	return t.boxes, err
}

// createMailbox adds a mailbox with a fresh id and UIDVALIDITY.
func (t *tx) createMailbox(name, specialUse string, subscribed bool) (uint64, *mailboxRecord, error) {
	id := t.acct.NextMailboxID
	t.acct.NextMailboxID++
	box := &mailboxRecord{
		Name:          name,
		UIDValidity:   t.nextUIDValidity(),
		UIDNext:       1,
		HighestModSeq: 1, // never advertise 0 (RFC 7162 reserves it)
		SpecialUse:    specialUse,
		Subscribed:    subscribed,
	}
	t.boxes[id] = box
	t.touch(id)
	if err := t.set(nameKey(t.account, name), appendUint64(nil, id)); err != nil {
		return 0, nil, err
	}
	return id, box, nil
}

// nextUIDValidity derives UIDVALIDITY from the clock, clamped above every
// value this account (and any deleted account, via the store floor) has
// had, so a re-created mailbox always gets a larger value than before.
func (t *tx) nextUIDValidity() uint32 {
	v := uint32(t.s.now().Unix())
	if m := t.acct.LastUIDValidity + 1; v < m {
		v = m
	}
	if m := t.s.floor.Load() + 1; v < m {
		v = m
	}
	t.acct.LastUIDValidity = v
	return v
}

// bumpModSeq allocates the next mod-sequence of a mailbox. One value is
// used for all messages changed by one operation, which RFC 7162 allows.
func (t *tx) bumpModSeq(id uint64, box *mailboxRecord) uint64 {
	box.HighestModSeq++
	t.touch(id)
	return box.HighestModSeq
}

// addMessage stores m in mailbox id under the next UID and takes a
// reference on its body. Counters and usage follow.
func (t *tx) addMessage(id uint64, box *mailboxRecord, m *messageRecord) (uint32, error) {
	if box.UIDNext == 0 || box.UIDNext == ^uint32(0) {
		return 0, fmt.Errorf("%w: %q", ErrUIDExhausted, box.Name)
	}
	uid := box.UIDNext
	box.UIDNext++
	if err := t.set(messageKey(t.account, id, uid), m.encode()); err != nil {
		return 0, err
	}
	t.refs[m.BodyID]++
	box.Messages++
	box.Bytes += m.Size
	if !hasFlag(m.Flags, flagSeen) {
		box.Unseen++
	}
	t.touch(id)
	t.acct.Messages++
	t.acct.Bytes += m.Size
	return uid, nil
}

// removeMessage deletes message uid (whose record is m) from mailbox id and
// drops its body reference.
func (t *tx) removeMessage(id uint64, box *mailboxRecord, uid uint32, m *messageRecord) error {
	if err := t.del(messageKey(t.account, id, uid)); err != nil {
		return err
	}
	t.refs[m.BodyID]--
	box.Messages--
	box.Bytes -= m.Size
	if !hasFlag(m.Flags, flagSeen) {
		box.Unseen--
	}
	t.touch(id)
	t.acct.Messages--
	t.acct.Bytes -= m.Size
	return nil
}

// updateMessage rewrites message uid after its flags changed from old.
func (t *tx) updateMessage(id uint64, box *mailboxRecord, uid uint32, oldFlags []string, m *messageRecord) error {
	was, is := hasFlag(oldFlags, flagSeen), hasFlag(m.Flags, flagSeen)
	switch {
	case was && !is:
		box.Unseen++
	case !was && is:
		box.Unseen--
	}
	t.touch(id)
	return t.set(messageKey(t.account, id, uid), m.encode())
}
