// Package raftstore holds the durable state behind a node's Raft instance.
package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"clustermail/wal"
)

// Key layout: a one-byte table prefix, then for logs the big-endian index so
// that pebble's byte order is index order and First/Last are single seeks.
const (
	prefixLog    byte = 0x41
	prefixStable byte = 0x42
)

// logFormatV1 is the first byte of every encoded log, so the format can
// change later without guessing.
const logFormatV1 byte = 1

// ErrKeyNotFound is what Get and GetUint64 return for a missing key. It is
// never wrapped: hashicorp/raft recognises it by comparing err.Error() with
// "not found", exactly as it does for raft-boltdb's error of the same name.
var ErrKeyNotFound = errors.New("not found")

var (
	_ raft.LogStore    = (*LogStore)(nil)
	_ raft.StableStore = (*LogStore)(nil)
)

// LogStoreOptions configures OpenLogStore.
type LogStoreOptions struct {
	// FS is the filesystem to use; nil means the OS filesystem. Tests pass
	// vfs.NewMem() or vfs.NewCrashableMem().
	FS vfs.FS
	// NoSync skips the fsync on writes. It loses acknowledged writes on a
	// power cut, which breaks Raft's safety: tests only.
	NoSync bool
	// DB, when set, is the node's shared database (keys 0x41-0x42 are the
	// log store's): the store neither opens nor closes it.
	DB *pebble.DB
	// WAL, with DB, learns of every synced append: it makes durable the
	// unsynced writes committed to DB before it (see package wal).
	WAL *wal.Tracker
}

// LogStore is a Pebble-backed raft.LogStore and raft.StableStore in one
// database, in the spirit of raft-boltdb's BoltStore.
type LogStore struct {
	db *pebble.DB
	wo *pebble.WriteOptions

	// writeMu serialises StoreLogs and DeleteRange, commit included, so the
	// cached bounds below change in the same order as the data. Raft writes
	// from its main loop and deletes from its snapshot goroutine, so this
	// costs nothing in practice.
	writeMu sync.Mutex
	// first and last cache FirstIndex and LastIndex (0 when empty). They are
	// read without a lock and only written under writeMu after a commit.
	first, last atomic.Uint64
	// hasLogs tells an empty log from one holding only index 0, which the
	// bounds cannot; guarded by writeMu.
	hasLogs bool
	shared  bool // db belongs to the node, not to the store
	wal     *wal.Tracker
}

// OpenLogStore opens (creating if needed) the store in dir.
func OpenLogStore(dir string, opts LogStoreOptions) (*LogStore, error) {
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	if opts.DB != nil {
		s := &LogStore{db: opts.DB, shared: true, wo: pebble.Sync, wal: opts.WAL}
		if opts.NoSync {
			s.wo = pebble.NoSync
		}
		s.writeMu.Lock()
		err := s.loadBoundsLocked()
		s.writeMu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("open raft log store: %w", err)
		}
		return s, nil
	}
	db, err := pebble.Open(dir, &pebble.Options{
		FS:                 fs,
		FormatMajorVersion: pebble.FormatNewest,
		// A node opens several pebble stores; the log is read mostly from
		// the memtable, so small caches are enough.
		CacheSize:    8 << 20,
		MemTableSize: 4 << 20,
		Logger:       logStoreLogger{},
	})
	if err != nil {
		return nil, fmt.Errorf("open raft log store %s: %w", dir, err)
	}
	s := &LogStore{db: db, wo: pebble.Sync}
	if opts.NoSync {
		s.wo = pebble.NoSync
	}
	s.writeMu.Lock()
	err = s.loadBoundsLocked()
	s.writeMu.Unlock()
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open raft log store %s: %w", dir, err)
	}
	return s, nil
}

// Close closes the database, unless it is shared.
func (s *LogStore) Close() error {
	if s.shared {
		return nil
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close raft log store: %w", err)
	}
	return nil
}

// FirstIndex returns the first index written, 0 for an empty log.
func (s *LogStore) FirstIndex() (uint64, error) {
	return s.first.Load(), nil
}

// LastIndex returns the last index written, 0 for an empty log.
func (s *LogStore) LastIndex() (uint64, error) {
	return s.last.Load(), nil
}

// GetLog reads the log at index into out; raft.ErrLogNotFound (unwrapped,
// raft compares it with ==) when there is none.
func (s *LogStore) GetLog(index uint64, out *raft.Log) error {
	val, closer, err := s.db.Get(logKey(index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("get log %d: %w", index, err)
	}
	// decodeLog copies, so val may go back to pebble afterwards.
	err = decodeLog(val, out)
	if cerr := closer.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("get log %d: %w", index, err)
	}
	return nil
}

// StoreLog stores one log durably.
func (s *LogStore) StoreLog(l *raft.Log) error {
	return s.StoreLogs([]*raft.Log{l})
}

// StoreLogs stores logs in one batch, durable before it returns.
func (s *LogStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	var buf []byte
	lo, hi := uint64(math.MaxUint64), uint64(0)
	for _, l := range logs {
		buf = appendLog(buf[:0], l)
		if err := b.Set(logKey(l.Index), buf, nil); err != nil {
			return fmt.Errorf("store log %d: %w", l.Index, err)
		}
		lo, hi = min(lo, l.Index), max(hi, l.Index)
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	mark := s.wal.BeforeSync()
	if err := b.Commit(s.wo); err != nil {
		return fmt.Errorf("store logs %d-%d: %w", lo, hi, err)
	}
	if s.wo.Sync {
		s.wal.Synced(mark)
	}
	// The stored set only grew, so the bounds can only widen.
	if !s.hasLogs || lo < s.first.Load() {
		s.first.Store(lo)
	}
	if !s.hasLogs || hi > s.last.Load() {
		s.last.Store(hi)
	}
	s.hasLogs = true
	return nil
}

// DeleteRange deletes the logs from lo to hi inclusive, in one synced
// batch holding a single range tombstone.
func (s *LogStore) DeleteRange(lo, hi uint64) error {
	if lo > hi {
		return nil
	}
	end := []byte{prefixLog + 1} // past every log key when hi is the top
	if hi < math.MaxUint64 {
		end = logKey(hi + 1)
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(logKey(lo), end, nil); err != nil {
		return fmt.Errorf("delete logs %d-%d: %w", lo, hi, err)
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := b.Commit(s.wo); err != nil {
		return fmt.Errorf("delete logs %d-%d: %w", lo, hi, err)
	}
	if err := s.narrowBoundsLocked(lo, hi); err != nil {
		return fmt.Errorf("delete logs %d-%d: %w", lo, hi, err)
	}
	return nil
}

// narrowBoundsLocked updates the cached bounds after [lo, hi] was deleted;
// the caller holds writeMu. It seeks from the edge of the deleted range
// rather than calling First or Last, which would have to step over every
// range tombstone still in the memtable.
func (s *LogStore) narrowBoundsLocked(lo, hi uint64) error {
	first, last := s.first.Load(), s.last.Load()
	switch {
	case !s.hasLogs || hi < first || lo > last:
		return nil // nothing stored was in the range
	case lo <= first && hi >= last:
		s.hasLogs = false
		s.first.Store(0)
		s.last.Store(0)
		return nil
	case lo > first && hi < last:
		return nil // a hole in the middle moves neither end
	}
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: logKey(first),
		UpperBound: []byte{prefixLog + 1},
	})
	if err != nil {
		return fmt.Errorf("log bounds: %w", err)
	}
	// Only one end moved, and the other end survives, so each seek finds a key.
	ok := true
	if lo <= first {
		if ok = it.SeekGE(logKey(hi + 1)); ok {
			first = binary.BigEndian.Uint64(it.Key()[1:])
		}
	} else if ok = it.SeekLT(logKey(lo)); ok {
		last = binary.BigEndian.Uint64(it.Key()[1:])
	}
	err = it.Close() // it reports the iterator's accumulated error too
	switch {
	case err != nil:
		return fmt.Errorf("log bounds: %w", err)
	case !ok: // the cache was wrong; never expected, but recover
		return s.loadBoundsLocked()
	}
	s.first.Store(first)
	s.last.Store(last)
	return nil
}

// loadBoundsLocked reads the first and last log index from the database;
// the caller holds writeMu.
func (s *LogStore) loadBoundsLocked() error {
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixLog},
		UpperBound: []byte{prefixLog + 1},
	})
	if err != nil {
		return fmt.Errorf("log bounds: %w", err)
	}
	var first, last uint64
	has := it.First()
	if has {
		first = binary.BigEndian.Uint64(it.Key()[1:])
		if it.Last() {
			last = binary.BigEndian.Uint64(it.Key()[1:])
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("log bounds: %w", err)
	}
	s.hasLogs = has
	s.first.Store(first)
	s.last.Store(last)
	return nil
}

// Set stores val under key, durably.
func (s *LogStore) Set(key, val []byte) error {
	if err := s.db.Set(stableKey(key), val, s.wo); err != nil {
		return fmt.Errorf("set %q: %w", key, err)
	}
	return nil
}

// Get returns the value stored under key, or ErrKeyNotFound.
func (s *LogStore) Get(key []byte) ([]byte, error) {
	val, closer, err := s.db.Get(stableKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	// Copy before Close hands val back to pebble; a stored empty value
	// stays non-nil so it is not mistaken for a missing one.
	out := append([]byte{}, val...)
	if err := closer.Close(); err != nil {
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	return out, nil
}

// SetUint64 stores val under key as 8 big-endian bytes, durably.
func (s *LogStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the value SetUint64 stored under key, or
// (0, ErrKeyNotFound).
func (s *LogStore) GetUint64(key []byte) (uint64, error) {
	val, err := s.Get(key)
	if err != nil {
		return 0, err // unwrapped: raft matches "not found" by text
	}
	if len(val) != 8 {
		return 0, fmt.Errorf("get uint64 %q: value is %d bytes, want 8", key, len(val))
	}
	return binary.BigEndian.Uint64(val), nil
}

// logStoreLogger drops pebble's chatter ("Found 1 WALs" on every open) but
// keeps its errors.
type logStoreLogger struct{}

func (logStoreLogger) Infof(string, ...any) {}

func (logStoreLogger) Errorf(format string, args ...any) {
	log.Printf("raftstore: pebble: "+format, args...)
}

// Fatalf must not return: pebble calls it on states it cannot go on from.
func (logStoreLogger) Fatalf(format string, args ...any) {
	log.Fatalf("raftstore: pebble: "+format, args...)
}

func logKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixLog}, index)
}

func stableKey(key []byte) []byte {
	return append([]byte{prefixStable}, key...)
}

// appendLog appends the encoding of l to buf:
//
//	version byte, uvarint Index, uvarint Term, Type byte,
//	uvarint len + Data, uvarint len + Extensions,
//	AppendedAt: 0 for the zero time, else 1, varint Unix seconds, uvarint nanos.
func appendLog(buf []byte, l *raft.Log) []byte {
	buf = append(buf, logFormatV1)
	buf = binary.AppendUvarint(buf, l.Index)
	buf = binary.AppendUvarint(buf, l.Term)
	buf = append(buf, byte(l.Type))
	buf = binary.AppendUvarint(buf, uint64(len(l.Data)))
	buf = append(buf, l.Data...)
	buf = binary.AppendUvarint(buf, uint64(len(l.Extensions)))
	buf = append(buf, l.Extensions...)
	// The zero time is common (older leaders do not set AppendedAt) and must
	// decode back to time.Time{}, not to a Unix time in year 1.
	if l.AppendedAt.IsZero() {
		return append(buf, 0)
	}
	buf = append(buf, 1)
	buf = binary.AppendVarint(buf, l.AppendedAt.Unix())
	return binary.AppendUvarint(buf, uint64(l.AppendedAt.Nanosecond()))
}

// errCorruptLog reports a stored log that does not decode.
var errCorruptLog = errors.New("corrupt log record")

// decodeLog decodes what appendLog wrote into l. Data and Extensions share
// one fresh copy of val, so val may be released afterwards.
func decodeLog(val []byte, l *raft.Log) error {
	if len(val) == 0 || val[0] != logFormatV1 {
		return fmt.Errorf("%w: unknown format", errCorruptLog)
	}
	d := logDecoder{buf: append([]byte(nil), val[1:]...)}
	out := raft.Log{
		Index: d.uvarint(),
		Term:  d.uvarint(),
		Type:  raft.LogType(d.byte()),
	}
	out.Data = d.bytes()
	out.Extensions = d.bytes()
	switch d.byte() {
	case 0: // zero time
	case 1:
		sec, nsec := d.varint(), d.uvarint()
		if nsec >= uint64(time.Second) {
			d.err = true
		}
		out.AppendedAt = time.Unix(sec, int64(nsec))
	default:
		d.err = true
	}
	if d.err || len(d.buf) != 0 {
		return errCorruptLog
	}
	*l = out
	return nil
}

// logDecoder reads fields in order and remembers the first short read.
type logDecoder struct {
	buf []byte
	err bool
}

func (d *logDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.err, d.buf = true, nil
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *logDecoder) varint() int64 {
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.err, d.buf = true, nil
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *logDecoder) byte() byte {
	if len(d.buf) == 0 {
		d.err = true
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

// bytes returns a length-prefixed field, nil when empty. The slice is capped
// so an append by raft cannot run into the next field.
func (d *logDecoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.buf)) {
		d.err, d.buf = true, nil
		return nil
	}
	if n == 0 {
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}
