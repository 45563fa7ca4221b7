package raftstore

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// Key prefixes of the replicated state. Each package that registers commands
// owns its range; nothing reads another package's keys.
const (
	PrefixMeta      = 0x00 // raftstore's own records (applied index)
	PrefixDirectory = 0x10 // 0x10-0x1f: directory
	PrefixQueue     = 0x20 // 0x20-0x2f: queue
	PrefixNodes     = 0x30 // 0x30-0x3f: node registry
)

var appliedKey = []byte{PrefixMeta, 'a'}

// Request-id records: 'r' + id -> index + outcome, and 'i' + index + id,
// the latter to forget ids in index order, deterministically.
const (
	tblRequest      = 'r'
	tblRequestIndex = 'i'
	// requestWindow is how many log entries a request id is remembered
	// for: far longer than any proposer keeps retrying.
	requestWindow = 1 << 16
)

// CommandType identifies a command in the Raft log. Numbers are append-only:
// a type, once released, keeps its meaning forever so newer nodes apply
// entries written by older ones.
type CommandType uint8

// IgnoreUnknown marks a command that a node which does not know its type
// may skip instead of stopping (Nomad's IgnoreUnknownTypeFlag).
const IgnoreUnknown CommandType = 128

// Handler applies one command's payload inside tx. It returns nil or a
// business error (*CommandError); decode failures are bugs and panic.
type Handler func(tx *Tx, payload []byte) error

// FSM is the replicated state machine: a dispatch table from command type to
// handler, and its state in Pebble. The applied index is written in the same
// batch as the state it describes, so replayed entries are skipped (etcd's
// consistent index).
type FSM struct {
	db       *pebble.DB
	log      *slog.Logger
	mu       sync.RWMutex // guards handlers; Restore takes it for writing
	handlers map[CommandType]Handler
	applied  atomic.Uint64
	restored []func()
	shared   bool // db belongs to the node
	requests requestSet

	waitMu  sync.Mutex
	advance chan struct{} // closed when the applied index moves; nil while nobody waits
}

// FSMOptions configures OpenFSM.
type FSMOptions struct {
	FS     vfs.FS // nil means the OS filesystem
	Logger *slog.Logger
	// DB, when set, is the node's shared database; the state is the key
	// range [0x00, 0x40) in it.
	DB *pebble.DB
}

// stateEnd bounds the replicated state's keys: snapshots copy, and restores
// replace, [0x00, stateEnd) and nothing else of a shared database.
var stateEnd = []byte{0x40}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// OpenFSM opens the state store in dir.
func OpenFSM(dir string, opts FSMOptions) (*FSM, error) {
	if opts.DB != nil {
		return newFSM(opts.DB, true, opts.Logger)
	}
	po := &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Cache:              pebble.NewCache(16 << 20),
		MemTableSize:       8 << 20,
		Logger:             QuietLogger{},
	}
	defer po.Cache.Unref()
	if opts.FS != nil {
		po.FS = opts.FS
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("open state store %s: %w", dir, err)
	}
	f, err := newFSM(db, false, opts.Logger)
	if err != nil {
		db.Close()
	}
	return f, err
}

func newFSM(db *pebble.DB, shared bool, lg *slog.Logger) (*FSM, error) {
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	f := &FSM{db: db, shared: shared, log: lg, handlers: map[CommandType]Handler{}}
	v, ok, err := f.Get(appliedKey)
	if err != nil {
		return nil, err
	}
	if ok {
		f.applied.Store(binary.BigEndian.Uint64(v))
	}
	if err := f.requests.load(db); err != nil {
		return nil, err
	}
	return f, nil
}

// Register adds the handler of one command type. Registering a type twice
// is a programming error.
func (f *FSM) Register(t CommandType, h Handler) {
	if t&withRequestID != 0 || t == cmdMulti {
		panic(fmt.Sprintf("raftstore: command type %d uses the request-id bit or is reserved", t))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.handlers[t]; dup {
		panic(fmt.Sprintf("raftstore: command type %d registered twice", t))
	}
	f.handlers[t] = h
}

// OnRestore registers fn to run after a snapshot replaced the state, so
// whoever caches or waits on the state looks again.
func (f *FSM) OnRestore(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restored = append(f.restored, fn)
}

// Close closes the state store, unless its database is shared.
func (f *FSM) Close() error {
	if f.shared {
		return nil
	}
	return f.db.Close()
}

// AppliedIndex is the index of the last log entry reflected in the state.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// Advanced returns a channel closed the next time the applied index
// moves, for whoever waits for an index without polling: read the index
// after taking the channel, then wait on it.
func (f *FSM) Advanced() <-chan struct{} {
	f.waitMu.Lock()
	defer f.waitMu.Unlock()
	if f.advance == nil {
		f.advance = make(chan struct{})
	}
	return f.advance
}

func (f *FSM) signalApplied() {
	f.waitMu.Lock()
	if f.advance != nil {
		close(f.advance)
		f.advance = nil
	}
	f.waitMu.Unlock()
}

// Apply applies one log entry.
func (f *FSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies committed entries in one Pebble batch. The batch is not
// synced: the Raft log is the durable record and entries past the state's
// applied index are replayed after a crash; Snapshot syncs before raft
// may truncate the log.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	f.mu.RLock()
	defer f.mu.RUnlock()
	resp := make([]any, len(logs))
	tx := &Tx{b: f.db.NewIndexedBatch(), requests: &f.requests}
	defer tx.b.Close()
	last := f.applied.Load()
	for i, l := range logs {
		if l.Index <= last {
			continue // replay of an entry the state already holds
		}
		last = l.Index
		if l.Type != raft.LogCommand {
			continue
		}
		tx.index = l.Index
		resp[i] = f.dispatch(tx, l)
		forgetRequests(tx, l.Index)
	}
	if last == f.applied.Load() {
		return resp
	}
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], last)
	if err := tx.b.Set(appliedKey, buf[:], nil); err != nil {
		panic(fmt.Sprintf("raftstore: set applied index: %v", err))
	}
	if err := f.db.Apply(tx.b, pebble.NoSync); err != nil {
		// The state can no longer follow the log; carrying on would diverge.
		panic(fmt.Sprintf("raftstore: commit apply batch at %d: %v", last, err))
	}
	f.applied.Store(last)
	f.signalApplied()
	for _, fn := range tx.after {
		fn()
	}
	return resp
}

func (f *FSM) dispatch(tx *Tx, l *raft.Log) any {
	if len(l.Data) == 0 {
		panic(fmt.Sprintf("raftstore: empty command at index %d", l.Index))
	}
	if CommandType(l.Data[0]) == cmdMulti {
		return f.applyMulti(tx, l.Data[1:], l.Index)
	}
	return f.dispatchData(tx, l.Data, l.Index)
}

// dispatchData applies one command, alone in its entry or inside a multi.
func (f *FSM) dispatchData(tx *Tx, data []byte, index uint64) any {
	t := CommandType(data[0])
	payload := data[1:]
	var rid []byte
	if t&withRequestID != 0 {
		if len(payload) < requestIDLen {
			panic(fmt.Sprintf("raftstore: truncated request id at index %d", index))
		}
		t &^= withRequestID
		rid, payload = payload[:requestIDLen], payload[requestIDLen:]
		if out, seen := seenRequest(tx, rid); seen {
			return out // a retry of a command already applied
		}
	}
	h, ok := f.handlers[t]
	if !ok {
		if t&IgnoreUnknown != 0 {
			f.log.Warn("skipping unknown command type", "type", uint8(t), "index", index)
			return nil
		}
		panic(fmt.Sprintf("raftstore: unknown command type %d at index %d: upgrade this node", t, index))
	}
	err := h(tx, payload)
	if rid != nil {
		rememberRequest(tx, rid, index, err)
	}
	if err != nil {
		return err
	}
	return nil
}

func seenRequest(tx *Tx, rid []byte) (error, bool) {
	if tx.requests != nil && !tx.requests.has(rid) {
		return nil, false
	}
	v, ok, err := tx.Get(append([]byte{PrefixMeta, tblRequest}, rid...))
	if err != nil {
		panic(fmt.Sprintf("raftstore: read request id: %v", err))
	}
	if !ok {
		return nil, false
	}
	if len(v) <= 8 {
		return nil, true
	}
	ce := &CommandError{}
	Decode(v[8:], ce)
	return ce, true
}

func rememberRequest(tx *Tx, rid []byte, index uint64, outcome error) {
	v := binary.BigEndian.AppendUint64(nil, index)
	var ce *CommandError
	if errors.As(outcome, &ce) {
		b, _ := json.Marshal(ce)
		v = append(v, b...)
	}
	if err := tx.Set(append([]byte{PrefixMeta, tblRequest}, rid...), v); err != nil {
		panic(err)
	}
	k := binary.BigEndian.AppendUint64([]byte{PrefixMeta, tblRequestIndex}, index)
	if err := tx.Set(append(k, rid...), nil); err != nil {
		panic(err)
	}
	if tx.requests != nil {
		tx.requests.add(rid)
	}
}

// forgetRequests drops request ids older than the window. It runs at fixed
// indexes, so every replica forgets the same ids at the same point.
func forgetRequests(tx *Tx, index uint64) {
	if index%1024 != 0 || index <= requestWindow {
		return
	}
	lower := []byte{PrefixMeta, tblRequestIndex}
	upper := binary.BigEndian.AppendUint64([]byte{PrefixMeta, tblRequestIndex}, index-requestWindow)
	var old [][]byte
	_ = tx.Iter(lower, upper, func(k, _ []byte) bool {
		old = append(old, append([]byte(nil), k...))
		return true
	})
	for _, k := range old {
		rid := k[2+8:]
		if tx.Delete(append([]byte{PrefixMeta, tblRequest}, rid...)) != nil || tx.Delete(k) != nil {
			panic("raftstore: forget request ids")
		}
		if tx.requests != nil {
			tx.requests.remove(rid)
		}
	}
}

// Snapshot captures the state at the current applied index. It first syncs
// the store so that the state is never behind a snapshot raft may use to
// truncate its log.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.db.LogData(nil, pebble.Sync); err != nil {
		return nil, fmt.Errorf("sync state before snapshot: %w", err)
	}
	return &snapshot{snap: f.db.NewSnapshot()}, nil
}

// Restore replaces all state with a snapshot's content.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.db.DeleteRange([]byte{0x00}, stateEnd, pebble.NoSync); err != nil {
		return fmt.Errorf("restore: clear state: %w", err)
	}
	r := bufio.NewReaderSize(rc, 1<<16)
	b := f.db.NewBatch()
	var applied uint64
	for {
		k, v, err := readRecord(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Close()
			return fmt.Errorf("restore: read snapshot: %w", err)
		}
		if len(k) == 0 || k[0] >= stateEnd[0] {
			b.Close()
			return fmt.Errorf("restore: key %x outside the replicated state", k)
		}
		if string(k) == string(appliedKey) && len(v) == 8 {
			applied = binary.BigEndian.Uint64(v)
		}
		if err := b.Set(k, v, nil); err != nil {
			b.Close()
			return err
		}
		if b.Len() > 4<<20 {
			if err := f.db.Apply(b, pebble.NoSync); err != nil {
				return fmt.Errorf("restore: write: %w", err)
			}
			b = f.db.NewBatch()
		}
	}
	if err := f.db.Apply(b, pebble.Sync); err != nil {
		return fmt.Errorf("restore: write: %w", err)
	}
	f.applied.Store(applied)
	f.signalApplied()
	if err := f.requests.load(f.db); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	for _, fn := range f.restored {
		fn()
	}
	return nil
}

// snapshot streams a Pebble snapshot as length-prefixed key/value records.
type snapshot struct{ snap *pebble.Snapshot }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	err := s.write(sink)
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) write(w io.Writer) error {
	it, err := s.snap.NewIter(&pebble.IterOptions{LowerBound: []byte{0x00}, UpperBound: stateEnd})
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		if err := writeRecord(bw, it.Key(), v); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

func (s *snapshot) Release() { s.snap.Close() }

func writeRecord(w *bufio.Writer, k, v []byte) error {
	var hdr [2 * binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(k)))
	n += binary.PutUvarint(hdr[n:], uint64(len(v)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	if _, err := w.Write(k); err != nil {
		return err
	}
	_, err := w.Write(v)
	return err
}

func readRecord(r *bufio.Reader) (k, v []byte, err error) {
	kl, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, nil, err // io.EOF at a record boundary ends the stream
	}
	vl, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, nil, io.ErrUnexpectedEOF
	}
	if kl > 1<<20 || vl > 1<<30 {
		return nil, nil, fmt.Errorf("record too large (%d, %d)", kl, vl)
	}
	buf := make([]byte, kl+vl)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, nil, io.ErrUnexpectedEOF
	}
	return buf[:kl], buf[kl:], nil
}

// Get reads one key of the committed state. The value is a copy.
func (f *FSM) Get(key []byte) ([]byte, bool, error) { return get(f.db, key) }

// Iter calls fn for each key in [lower, upper) of the committed state, in
// order, until fn returns false. k and v are valid only during the call.
func (f *FSM) Iter(lower, upper []byte, fn func(k, v []byte) bool) error {
	return iter(f.db, lower, upper, fn)
}

type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

func get(r reader, key []byte) ([]byte, bool, error) {
	v, c, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state get: %w", err)
	}
	out := append([]byte(nil), v...)
	c.Close()
	return out, true, nil
}

func iter(r reader, lower, upper []byte, fn func(k, v []byte) bool) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("state iter: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return fmt.Errorf("state iter: %w", err)
		}
		if !fn(it.Key(), v) {
			break
		}
	}
	return it.Close()
}

// Reader is read access to the replicated state; both the committed state
// (*FSM) and a command's transaction (*Tx) provide it, so lookups are written
// once and used on both paths.
type Reader interface {
	Get(key []byte) ([]byte, bool, error)
	Iter(lower, upper []byte, fn func(k, v []byte) bool) error
}

// Tx is what a handler sees while applying: reads include the writes of
// earlier commands in the same batch.
type Tx struct {
	b        *pebble.Batch
	requests *requestSet
	index    uint64
	after    []func()
}

// Index is the Raft index of the command being applied.
func (t *Tx) Index() uint64 { return t.index }

// Get reads a key, seeing this batch's writes.
func (t *Tx) Get(key []byte) ([]byte, bool, error) { return get(t.b, key) }

// Iter iterates [lower, upper), seeing this batch's writes.
func (t *Tx) Iter(lower, upper []byte, fn func(k, v []byte) bool) error {
	return iter(t.b, lower, upper, fn)
}

// Set writes a key.
func (t *Tx) Set(key, value []byte) error { return t.b.Set(key, value, nil) }

// Delete removes a key.
func (t *Tx) Delete(key []byte) error { return t.b.Delete(key, nil) }

// AfterCommit runs fn once the batch holding this command is committed, to
// wake whoever waits on the change. fn must not block.
func (t *Tx) AfterCommit(fn func()) { t.after = append(t.after, fn) }

// QuietLogger drops Pebble's informational chatter (WAL replay lines on
// every open); errors still surface through returned errors, and a fatal
// condition panics.
type QuietLogger struct{}

func (QuietLogger) Infof(string, ...any)  {}
func (QuietLogger) Errorf(string, ...any) {}
func (QuietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
