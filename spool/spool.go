// Package spool is a node's local store of message bodies while they wait in
// the queue. Bodies never go through Raft: the replicated queue holds only
// ids, and each body stays on the node that received it.
package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"clustermail/wal"
)

// ErrNotFound is returned by Get for an id that is not stored.
var ErrNotFound = errors.New("spool: body not found")

// ErrTooLarge is returned (wrapped) by PutFrom when the body exceeds its limit.
var ErrTooLarge = errors.New("spool: body too large")

// Key layout. Metadata keys are the id itself after the prefix, so iterating
// them is id order. A body is split into chunks so that no pebble value is
// huge; chunk keys end in a NUL and a fixed-width number, and ids may not
// contain NUL, so one id's chunks can never fall among another's.
const (
	prefixMeta  byte = 'm'
	prefixChunk byte = 'c'

	chunkSize = 1 << 20
	maxIDLen  = 1024
	metaV1    = 1 // first byte of a metadata record
)

// Options configures Open.
type Options struct {
	// FS is the filesystem to use; nil means the OS filesystem.
	FS vfs.FS
	// DB, when set, is the node's shared database (keys 'c' and 'm' are
	// the spool's): the spool neither opens nor closes it.
	DB *pebble.DB
	// WAL, with DB, is the node's tracker of synced commits: PutUnsynced
	// needs it to know when its write became durable (see package wal).
	WAL *wal.Tracker
}

// Spool stores message bodies by id in a pebble database of its own.
type Spool struct {
	db *pebble.DB

	// locks serialises Put and Delete of the same id, which read the old
	// metadata before writing. Different ids never wait on each other, so
	// concurrent Puts still share fsyncs in pebble's commit pipeline.
	locks idLocks

	count, bytes atomic.Int64 // for Stats, kept in step with commits
	shared       bool         // db belongs to the node
	wal          *wal.Tracker
}

// meta is the small record stored beside each body.
type meta struct {
	stored time.Time
	size   int64
	chunks uint32
}

// Open opens (creating if needed) the spool in dir.
func Open(dir string, opts Options) (*Spool, error) {
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	if opts.DB != nil {
		s := &Spool{db: opts.DB, shared: true, wal: opts.WAL}
		if err := s.List(func(_ string, _ time.Time, size int64) bool {
			s.count.Add(1)
			s.bytes.Add(size)
			return true
		}); err != nil {
			return nil, fmt.Errorf("open spool: %w", err)
		}
		return s, nil
	}
	db, err := pebble.Open(dir, &pebble.Options{
		FS:                 fs,
		FormatMajorVersion: pebble.FormatNewest,
		CacheSize:          8 << 20,
		// A commit over half the memtable bypasses it and forces a flush;
		// 16 MiB keeps ordinary bodies (well under 8 MiB) on the fast path.
		MemTableSize: 16 << 20,
		Logger:       quietLogger{},
	})
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	s := &Spool{db: db}
	err = s.List(func(_ string, _ time.Time, size int64) bool {
		s.count.Add(1)
		s.bytes.Add(size)
		return true
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	return s, nil
}

// Close closes the database, unless it is shared.
func (s *Spool) Close() error {
	if s.shared {
		return nil
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close spool: %w", err)
	}
	return nil
}

// Put stores body under id, durably (fsynced) before it returns. Putting an
// id again replaces its body and stored time; with the same body that is
// harmless, so a retried Put is safe.
func (s *Spool) Put(id string, body []byte) error {
	_, err := s.put(id, body, pebble.Sync)
	return err
}

// PutUnsynced stores body like Put but returns before it is on disk, with
// the ticket to pass to Sync. A node that is about to append a Raft entry
// to the same database usually gets the fsync for free: the append is
// synced, and covers every write committed before it.
func (s *Spool) PutUnsynced(id string, body []byte) (ticket uint64, err error) {
	if s.wal == nil {
		return 0, s.Put(id, body) // nothing would tell when it is durable
	}
	return s.put(id, body, pebble.NoSync)
}

// Sync returns once the write of ticket is durable, with an fsync of its
// own only if no synced commit has covered it yet.
func (s *Spool) Sync(ticket uint64) error {
	if s.wal == nil || s.wal.Durable(ticket) {
		return nil
	}
	mark := s.wal.BeforeSync()
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("sync spool: %w", err)
	}
	s.wal.Synced(mark)
	return nil
}

func (s *Spool) put(id string, body []byte, wo *pebble.WriteOptions) (ticket uint64, err error) {
	if err := checkID(id); err != nil {
		return 0, err
	}
	b := s.db.NewBatch(pebble.WithInitialSizeBytes(len(body) + 256))
	defer b.Close()
	var n uint32
	for off := 0; off < len(body); off += chunkSize {
		end := min(off+chunkSize, len(body))
		if err := b.Set(chunkKey(id, n), body[off:end], nil); err != nil {
			return 0, fmt.Errorf("put %q: %w", id, err)
		}
		n++
	}
	return s.commit(id, b, meta{size: int64(len(body)), chunks: n}, wo)
}

// PutFrom reads a body of at most limit bytes from r and stores it like
// Put. n is the number of bytes read from r. A body longer than limit is
// not stored and the error wraps ErrTooLarge.
func (s *Spool) PutFrom(id string, r io.Reader, limit int64) (n int64, err error) {
	if err := checkID(id); err != nil {
		return 0, err
	}
	if limit < 0 {
		return 0, fmt.Errorf("put %q: negative limit %d", id, limit)
	}
	b := s.db.NewBatch()
	defer b.Close()
	// Read one byte past limit to tell "exactly limit" from "too large".
	lr := io.LimitReader(r, limit+1)
	buf := make([]byte, min(chunkSize, limit+1))
	var chunks uint32
	for {
		k, err := io.ReadFull(lr, buf)
		n += int64(k)
		if n > limit {
			return n, fmt.Errorf("put %q: %w: over %d bytes", id, ErrTooLarge, limit)
		}
		if k > 0 {
			if err := b.Set(chunkKey(id, chunks), buf[:k], nil); err != nil {
				return n, fmt.Errorf("put %q: %w", id, err)
			}
			chunks++
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return n, fmt.Errorf("put %q: read body: %w", id, err)
		}
	}
	_, err = s.commit(id, b, meta{size: n, chunks: chunks}, pebble.Sync)
	return n, err
}

// commit adds id's metadata to a batch already holding its chunks, drops
// chunks left over from a longer earlier body, and commits with wo. An
// unsynced commit returns its ticket (package wal); a synced one marks
// every earlier ticket durable.
func (s *Spool) commit(id string, b *pebble.Batch, m meta, wo *pebble.WriteOptions) (ticket uint64, err error) {
	unlock := s.locks.lock(id)
	defer unlock()
	old, found, err := s.readMeta(s.db, id)
	if err != nil {
		return 0, fmt.Errorf("put %q: %w", id, err)
	}
	for c := m.chunks; found && c < old.chunks; c++ {
		if err := b.Delete(chunkKey(id, c), nil); err != nil {
			return 0, fmt.Errorf("put %q: %w", id, err)
		}
	}
	m.stored = time.Now()
	if err := b.Set(metaKey(id), appendMeta(nil, m), nil); err != nil {
		return 0, fmt.Errorf("put %q: %w", id, err)
	}
	mark := s.wal.BeforeSync()
	if err := b.Commit(wo); err != nil {
		return 0, fmt.Errorf("put %q: %w", id, err)
	}
	if wo.Sync {
		s.wal.Synced(mark)
	} else {
		ticket = s.wal.Written()
	}
	if found {
		s.bytes.Add(m.size - old.size)
	} else {
		s.count.Add(1)
		s.bytes.Add(m.size)
	}
	return ticket, nil
}

// Get returns the body stored under id, or ErrNotFound.
func (s *Spool) Get(id string) ([]byte, error) {
	if checkID(id) != nil {
		return nil, ErrNotFound
	}
	// One snapshot, so a concurrent Delete or Put cannot tear the body.
	snap := s.db.NewSnapshot()
	defer snap.Close()
	m, found, err := s.readMeta(snap, id)
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", id, err)
	}
	if !found {
		return nil, ErrNotFound
	}
	it, err := snap.NewIter(&pebble.IterOptions{
		LowerBound: chunkKey(id, 0),
		UpperBound: chunkKey(id, m.chunks),
	})
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", id, err)
	}
	body := make([]byte, 0, m.size)
	var next uint32
	for ok := it.First(); ok; ok = it.Next() {
		if binary.BigEndian.Uint32(it.Key()[len(it.Key())-4:]) != next {
			break // a missing chunk; reported below
		}
		v, err := it.ValueAndErr()
		if err != nil {
			break // Close reports it
		}
		body = append(body, v...)
		next++
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("get %q: %w", id, err)
	}
	if next != m.chunks || int64(len(body)) != m.size {
		return nil, fmt.Errorf("get %q: corrupt body: %d of %d chunks, %d of %d bytes",
			id, next, m.chunks, len(body), m.size)
	}
	return body, nil
}

// Has reports whether a body is stored under id. A read error counts as
// absent; Get reports it.
func (s *Spool) Has(id string) bool {
	if checkID(id) != nil {
		return false
	}
	_, found, err := s.readMeta(s.db, id)
	return found && err == nil
}

// Delete removes the body stored under id; deleting an absent id is not an
// error. It does not fsync, to spare one fsync per delivered message: a body
// that a power cut brings back is an orphan with no queue entry, like one
// whose Put outlived a failed enqueue, and a sweep over List must remove
// those anyway. The next synced Put makes the delete durable in passing.
func (s *Spool) Delete(id string) error {
	if checkID(id) != nil {
		return nil
	}
	unlock := s.locks.lock(id)
	defer unlock()
	m, found, err := s.readMeta(s.db, id)
	if err != nil {
		return fmt.Errorf("delete %q: %w", id, err)
	}
	if !found {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Delete(metaKey(id), nil); err != nil {
		return fmt.Errorf("delete %q: %w", id, err)
	}
	for c := range m.chunks {
		if err := b.Delete(chunkKey(id, c), nil); err != nil {
			return fmt.Errorf("delete %q: %w", id, err)
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("delete %q: %w", id, err)
	}
	s.count.Add(-1)
	s.bytes.Add(-m.size)
	return nil
}

// List calls fn for every stored body, in id order, with the time it was
// stored and its size; fn returning false stops the walk. fn sees a
// consistent snapshot and may call other Spool methods, Delete included;
// the walk pins the files it reads until it ends, so keep fn short.
func (s *Spool) List(fn func(id string, stored time.Time, size int64) bool) error {
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixMeta},
		UpperBound: []byte{prefixMeta + 1},
	})
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		id := string(it.Key()[1:])
		v, err := it.ValueAndErr()
		if err != nil {
			break // Close reports it
		}
		m, err := decodeMeta(v)
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("list: %q: %w", id, err)
		}
		if !fn(id, m.stored, m.size) {
			break
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	return nil
}

// Stats returns how many bodies are stored and their total size in bytes.
func (s *Spool) Stats() (count int, bytes int64) {
	return int(s.count.Load()), s.bytes.Load()
}

// readMeta reads id's metadata from r (the database or a snapshot).
func (s *Spool) readMeta(r pebble.Reader, id string) (m meta, found bool, err error) {
	v, closer, err := r.Get(metaKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return meta{}, false, nil
	}
	if err != nil {
		return meta{}, false, err
	}
	m, err = decodeMeta(v)
	if cerr := closer.Close(); err == nil {
		err = cerr
	}
	return m, err == nil, err
}

func checkID(id string) error {
	if id == "" || len(id) > maxIDLen || strings.IndexByte(id, 0) >= 0 {
		return fmt.Errorf("spool: invalid id %q: want 1-%d bytes, no NUL", id, maxIDLen)
	}
	return nil
}

func metaKey(id string) []byte {
	return append([]byte{prefixMeta}, id...)
}

func chunkKey(id string, chunk uint32) []byte {
	k := make([]byte, 0, len(id)+6)
	k = append(append(append(k, prefixChunk), id...), 0)
	return binary.BigEndian.AppendUint32(k, chunk)
}

// appendMeta encodes m as: version byte, varint stored Unix nanoseconds,
// uvarint size, uvarint chunk count.
func appendMeta(buf []byte, m meta) []byte {
	buf = append(buf, metaV1)
	buf = binary.AppendVarint(buf, m.stored.UnixNano())
	buf = binary.AppendUvarint(buf, uint64(m.size))
	return binary.AppendUvarint(buf, uint64(m.chunks))
}

var errCorruptMeta = errors.New("corrupt metadata")

func decodeMeta(v []byte) (meta, error) {
	if len(v) == 0 || v[0] != metaV1 {
		return meta{}, errCorruptMeta
	}
	v = v[1:]
	stored, n1 := binary.Varint(v)
	if n1 <= 0 {
		return meta{}, errCorruptMeta
	}
	size, n2 := binary.Uvarint(v[n1:])
	if n2 <= 0 {
		return meta{}, errCorruptMeta
	}
	chunks, n3 := binary.Uvarint(v[n1+n2:])
	if n3 <= 0 || n1+n2+n3 != len(v) || size > 1<<62 || chunks > 1<<32-1 {
		return meta{}, errCorruptMeta
	}
	return meta{stored: time.Unix(0, stored), size: int64(size), chunks: uint32(chunks)}, nil
}

// idLocks is a mutex per id, created on demand and dropped when unused.
type idLocks struct {
	mu sync.Mutex
	m  map[string]*idLock
}

type idLock struct {
	sync.Mutex
	waiters int // holders and waiters; guarded by idLocks.mu
}

// lock locks id and returns the unlock function.
func (l *idLocks) lock(id string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*idLock)
	}
	e := l.m[id]
	if e == nil {
		e = &idLock{}
		l.m[id] = e
	}
	e.waiters++
	l.mu.Unlock()

	e.Lock()
	return func() {
		e.Unlock()
		l.mu.Lock()
		if e.waiters--; e.waiters == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
}

// quietLogger drops pebble's chatter ("Found 1 WALs" on every open) but
// keeps its errors.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}

func (quietLogger) Errorf(format string, args ...any) {
	log.Printf("spool: pebble: "+format, args...)
}

// Fatalf must not return: pebble calls it on states it cannot go on from.
func (quietLogger) Fatalf(format string, args ...any) {
	log.Fatalf("spool: pebble: "+format, args...)
}
