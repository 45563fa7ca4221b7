// Package mailstore is a node's storage of the mailboxes it owns, kept in a
// single Pebble database. It models what IMAP (with CONDSTORE and
// SPECIAL-USE) and POP3 need: folders with UIDVALIDITY/UIDNEXT and
// HIGHESTMODSEQ, and messages with UID, MODSEQ, flags, internal date and
// size. Every write that acknowledges something is committed with
// pebble.Sync.
//
// Concurrency: writes to one account are serialised by a per-account lock
// held across the synced commit, so every read-modify-write sees the
// previous one. Reads take a Pebble snapshot under the same lock, which
// guarantees they never observe a batch that is visible but not yet synced
// (Pebble publishes a batch before its WAL fsync completes).
package mailstore

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// schemaVersion is the on-disk layout version written into a new store.
// Open refuses stores written by a newer layout.
const schemaVersion = 1

// lockStripes is the number of per-account mutexes. Striping bounds memory
// regardless of how many accounts a node owns; two accounts sharing a stripe
// merely serialise their writes.
const lockStripes = 1024

// Options configures Open.
type Options struct {
	// FS is the filesystem the database lives in; nil means the OS
	// filesystem. Tests pass vfs.NewMem() or vfs.NewCrashableMem().
	FS vfs.FS
	// DB, when set, is the node's shared database (keys 0x80-0x87 are the
	// store's): the store neither opens nor closes it.
	DB *pebble.DB
}

// Store is one node's mailbox storage. It is safe for concurrent use.
type Store struct {
	db     *pebble.DB
	shared bool // db belongs to the node

	// life guards db against Close: operations hold it for reading.
	life   sync.RWMutex
	closed bool

	seed  maphash.Seed
	locks [lockStripes]sync.Mutex

	// floor is a store-wide UIDVALIDITY lower bound that survives
	// DeleteAccount, so a re-created account never reuses old values even
	// if the clock went backwards. floorMu serialises its persistence.
	floorMu sync.Mutex
	floor   atomic.Uint32

	subs notifier

	// now is the clock; tests replace it to exercise UIDVALIDITY clamping.
	now func() time.Time
}

// quietLogger drops Pebble's routine info messages (it reports WAL replay
// on every open) and keeps its errors and fatal errors.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)              {}
func (quietLogger) Errorf(format string, args ...any) { pebble.DefaultLogger.Errorf(format, args...) }
func (quietLogger) Fatalf(format string, args ...any) { pebble.DefaultLogger.Fatalf(format, args...) }

// reader is what read paths need; *pebble.DB and *pebble.Snapshot both
// satisfy it.
type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	if opts.DB != nil {
		s := &Store{db: opts.DB, shared: true, seed: maphash.MakeSeed(), now: time.Now}
		if err := s.init(); err != nil {
			return nil, fmt.Errorf("mailstore: open: %w", err)
		}
		return s, nil
	}
	db, err := pebble.Open(dir, &pebble.Options{
		FS:                 opts.FS,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             quietLogger{},
	})
	if err != nil {
		return nil, fmt.Errorf("mailstore: open %s: %w", dir, err)
	}
	s := &Store{db: db, seed: maphash.MakeSeed(), now: time.Now}
	if err := s.init(); err != nil {
		return nil, errors.Join(fmt.Errorf("mailstore: open %s: %w", dir, err), db.Close())
	}
	return s, nil
}

// init checks or writes the schema version and loads the UIDVALIDITY floor.
func (s *Store) init() error {
	v, ok, err := getUint64(s.db, metaKey(metaVersion))
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	switch {
	case !ok:
		if err := s.db.Set(metaKey(metaVersion), appendUint64(nil, schemaVersion), pebble.Sync); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
	case v > schemaVersion:
		return fmt.Errorf("schema version %d is newer than supported %d", v, schemaVersion)
	}
	floor, _, err := getUint64(s.db, metaKey(metaUIDValidityFloor))
	if err != nil {
		return fmt.Errorf("read uidvalidity floor: %w", err)
	}
	s.floor.Store(uint32(floor))
	return nil
}

// Close closes the store. Calls made after Close return ErrClosed.
func (s *Store) Close() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.shared {
		return nil
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("mailstore: close: %w", err)
	}
	return nil
}

// enter marks an operation in progress; it fails once the store is closed.
func (s *Store) enter() error {
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *Store) leave() { s.life.RUnlock() }

// lockFor returns the mutex serialising writes to account.
func (s *Store) lockFor(account string) *sync.Mutex {
	return &s.locks[maphash.String(s.seed, account)%lockStripes]
}

// view runs fn against a snapshot of the store taken while holding the
// account's lock, so fn sees every acknowledged write and nothing that is
// not yet durable.
func (s *Store) view(account string, fn func(r reader) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	mu := s.lockFor(account)
	mu.Lock()
	snap := s.db.NewSnapshot()
	mu.Unlock()
	defer snap.Close()
	return fn(snap)
}

// update runs fn as one read-modify-write of account and commits what it
// wrote in a single synced batch. Subscribers are signalled after the
// commit if anything was written.
func (s *Store) update(account string, fn func(t *tx) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	mu := s.lockFor(account)
	mu.Lock()
	defer mu.Unlock()

	t, err := s.begin(account)
	if err != nil {
		return err
	}
	defer t.batch.Close()
	if err := fn(t); err != nil {
		return err
	}
	if !t.dirty() {
		return nil
	}
	if err := t.commit(); err != nil {
		return err
	}
	s.subs.signal(account)
	return nil
}

// getUint64 reads a big-endian uint64 value; ok is false if key is absent.
func getUint64(r reader, key []byte) (v uint64, ok bool, err error) {
	err = get(r, key, func(b []byte) error {
		if len(b) != 8 {
			return fmt.Errorf("%w: bad uint64 value for key %x", ErrCorrupt, key)
		}
		v, ok = decodeUint64(b), true
		return nil
	})
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	return v, ok, err
}

// get calls fn with the value of key, which is only valid during fn. It
// returns pebble.ErrNotFound if the key is absent.
func get(r reader, key []byte, fn func(b []byte) error) error {
	b, closer, err := r.Get(key)
	if err != nil {
		return err
	}
	defer closer.Close()
	return fn(b)
}
