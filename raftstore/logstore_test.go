package raftstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	raftbench "github.com/hashicorp/raft/bench"
)

// openLogStoreT opens a store in dir on fs and closes it at the end of the
// test, failing the test if Close reports an error (a leaked iterator, say).
func openLogStoreT(tb testing.TB, fs vfs.FS, dir string, noSync bool) *LogStore {
	tb.Helper()
	s, err := OpenLogStore(dir, LogStoreOptions{FS: fs, NoSync: noSync})
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() {
		if s.db != nil {
			if err := s.Close(); err != nil {
				tb.Errorf("close: %v", err)
			}
		}
	})
	return s
}

// reopenLogStoreT closes s and opens the same directory again.
func reopenLogStoreT(tb testing.TB, s *LogStore, fs vfs.FS, dir string) *LogStore {
	tb.Helper()
	if err := s.Close(); err != nil {
		tb.Fatalf("close: %v", err)
	}
	s.db = nil
	return openLogStoreT(tb, fs, dir, false)
}

// indexedLog returns a log at index i with every field set.
func indexedLog(i uint64) *raft.Log {
	return &raft.Log{
		Index:      i,
		Term:       i/10 + 1,
		Type:       raft.LogCommand,
		Data:       fmt.Appendf(nil, "data-%d", i),
		Extensions: fmt.Appendf(nil, "ext-%d", i),
		AppendedAt: time.Unix(1_700_000_000+int64(i), int64(i)),
	}
}

// logRange returns indexedLog(lo) to indexedLog(hi), hi included even at MaxUint64.
func logRange(lo, hi uint64) []*raft.Log {
	var logs []*raft.Log
	for i := lo; ; i++ {
		logs = append(logs, indexedLog(i))
		if i == hi {
			return logs
		}
	}
}

// sameLog compares logs field by field; time.Time needs Equal, not ==.
func sameLog(a, b *raft.Log) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type &&
		bytes.Equal(a.Data, b.Data) && bytes.Equal(a.Extensions, b.Extensions) &&
		a.AppendedAt.Equal(b.AppendedAt) && a.AppendedAt.IsZero() == b.AppendedAt.IsZero()
}

type logSpan struct{ lo, hi uint64 }

func TestLogStoreContract(t *testing.T) {
	tests := []struct {
		name        string
		store       []logSpan // each one StoreLogs call
		del         []logSpan // then each one DeleteRange call
		first, last uint64
		present     []uint64
		absent      []uint64
	}{
		{name: "empty", absent: []uint64{0, 1, math.MaxUint64}},
		{name: "range", store: []logSpan{{1, 10}}, first: 1, last: 10,
			present: []uint64{1, 5, 10}, absent: []uint64{0, 11}},
		{name: "single", store: []logSpan{{7, 7}}, first: 7, last: 7,
			present: []uint64{7}, absent: []uint64{6, 8}},
		{name: "delete head", store: []logSpan{{1, 10}}, del: []logSpan{{1, 3}}, first: 4, last: 10,
			present: []uint64{4, 10}, absent: []uint64{1, 3}},
		{name: "delete tail", store: []logSpan{{1, 10}}, del: []logSpan{{8, 10}}, first: 1, last: 7,
			present: []uint64{1, 7}, absent: []uint64{8, 10}},
		{name: "delete middle", store: []logSpan{{1, 10}}, del: []logSpan{{4, 6}}, first: 1, last: 10,
			present: []uint64{3, 7}, absent: []uint64{4, 5, 6}},
		{name: "delete all", store: []logSpan{{1, 10}}, del: []logSpan{{1, 10}},
			absent: []uint64{1, 10}},
		{name: "delete wider than log", store: []logSpan{{5, 10}}, del: []logSpan{{0, 100}},
			absent: []uint64{5, 10}},
		{name: "delete to max uint64", store: []logSpan{{1, 10}}, del: []logSpan{{6, math.MaxUint64}},
			first: 1, last: 5, present: []uint64{5}, absent: []uint64{6}},
		{name: "delete across head", store: []logSpan{{5, 10}}, del: []logSpan{{1, 6}}, first: 7, last: 10,
			present: []uint64{7}, absent: []uint64{5, 6}},
		{name: "delete across tail", store: []logSpan{{5, 10}}, del: []logSpan{{9, 20}}, first: 5, last: 8,
			present: []uint64{8}, absent: []uint64{9, 10}},
		{name: "delete before and after", store: []logSpan{{5, 10}}, del: []logSpan{{1, 4}, {11, 20}},
			first: 5, last: 10, present: []uint64{5, 10}},
		{name: "delete head, tail, middle", store: []logSpan{{1, 20}}, del: []logSpan{{1, 5}, {16, 20}, {8, 9}},
			first: 6, last: 15, present: []uint64{6, 7, 10, 15}, absent: []uint64{5, 8, 9, 16}},
		{name: "delete head past a gap", store: []logSpan{{1, 3}, {10, 12}}, del: []logSpan{{1, 5}},
			first: 10, last: 12, present: []uint64{10}, absent: []uint64{3}},
		{name: "delete tail past a gap", store: []logSpan{{1, 3}, {10, 12}}, del: []logSpan{{8, 12}},
			first: 1, last: 3, present: []uint64{3}, absent: []uint64{10}},
		{name: "delete inverted is no-op", store: []logSpan{{1, 10}}, del: []logSpan{{8, 2}},
			first: 1, last: 10, present: []uint64{2, 8}},
		{name: "store after delete all", store: []logSpan{{1, 10}, {11, 12}}, del: []logSpan{{1, 10}},
			first: 11, last: 12, present: []uint64{11, 12}, absent: []uint64{10}},
		{name: "overlapping store", store: []logSpan{{1, 5}, {3, 8}}, first: 1, last: 8,
			present: []uint64{1, 3, 8}},
		{name: "gap", store: []logSpan{{1, 3}, {10, 12}}, first: 1, last: 12,
			present: []uint64{3, 10}, absent: []uint64{4, 9}},
		{name: "index zero and max", store: []logSpan{{0, 0}, {math.MaxUint64, math.MaxUint64}},
			first: 0, last: math.MaxUint64, present: []uint64{0, math.MaxUint64}, absent: []uint64{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewMem()
			s := openLogStoreT(t, fs, "log", false)
			for _, sp := range tt.store {
				if err := s.StoreLogs(logRange(sp.lo, sp.hi)); err != nil {
					t.Fatalf("store %v: %v", sp, err)
				}
			}
			for _, sp := range tt.del {
				if err := s.DeleteRange(sp.lo, sp.hi); err != nil {
					t.Fatalf("delete %v: %v", sp, err)
				}
			}
			check := func(t *testing.T, s *LogStore) {
				if got, _ := s.FirstIndex(); got != tt.first {
					t.Errorf("FirstIndex = %d, want %d", got, tt.first)
				}
				if got, _ := s.LastIndex(); got != tt.last {
					t.Errorf("LastIndex = %d, want %d", got, tt.last)
				}
				for _, i := range tt.present {
					var got raft.Log
					if err := s.GetLog(i, &got); err != nil {
						t.Errorf("GetLog(%d): %v", i, err)
					} else if !sameLog(&got, indexedLog(i)) {
						t.Errorf("GetLog(%d) = %+v, want %+v", i, got, indexedLog(i))
					}
				}
				for _, i := range tt.absent {
					// Exactly the sentinel: raft compares with ==.
					if err := s.GetLog(i, new(raft.Log)); err != raft.ErrLogNotFound {
						t.Errorf("GetLog(%d) error = %v, want raft.ErrLogNotFound", i, err)
					}
				}
			}
			t.Run("live", func(t *testing.T) { check(t, s) })
			s = reopenLogStoreT(t, s, fs, "log")
			t.Run("reopened", func(t *testing.T) { check(t, s) })
		})
	}
}

func TestLogStoreStoreLog(t *testing.T) {
	s := openLogStoreT(t, vfs.NewMem(), "log", false)
	for i := uint64(1); i <= 3; i++ {
		if err := s.StoreLog(indexedLog(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.StoreLogs(nil); err != nil {
		t.Fatalf("StoreLogs(nil): %v", err)
	}
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 1 || last != 3 {
		t.Fatalf("bounds = %d-%d, want 1-3", first, last)
	}
}

func TestLogRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		log  raft.Log
	}{
		{"zero", raft.Log{}},
		{"index only", raft.Log{Index: 1}},
		{"all fields", *indexedLog(42)},
		{"max numbers", raft.Log{Index: math.MaxUint64, Term: math.MaxUint64, Type: raft.LogType(255)}},
		{"noop", raft.Log{Index: 2, Term: 1, Type: raft.LogNoop}},
		{"configuration", raft.Log{Index: 3, Term: 1, Type: raft.LogConfiguration, Data: []byte{1, 2, 3}}},
		{"extensions only", raft.Log{Index: 4, Extensions: []byte("chunking")}},
		{"big data", raft.Log{Index: 5, Data: bytes.Repeat([]byte("x"), 1<<20)}},
		{"binary data", raft.Log{Index: 6, Data: []byte{0, 0xff, 0, 1}}},
		{"appended now", raft.Log{Index: 7, AppendedAt: time.Now()}},
		{"appended nanos", raft.Log{Index: 8, AppendedAt: time.Unix(1, 999_999_999)}},
		{"appended before 1970", raft.Log{Index: 9, AppendedAt: time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC)}},
		{"appended far future", raft.Log{Index: 10, AppendedAt: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
	s := openLogStoreT(t, vfs.NewMem(), "log", false)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.log
			var dec raft.Log
			if err := decodeLog(appendLog(nil, &in), &dec); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !sameLog(&dec, &in) {
				t.Fatalf("decoded %+v, want %+v", dec, in)
			}
			if err := s.StoreLog(&in); err != nil {
				t.Fatal(err)
			}
			var got raft.Log
			if err := s.GetLog(in.Index, &got); err != nil {
				t.Fatal(err)
			}
			if !sameLog(&got, &in) {
				t.Fatalf("stored %+v, want %+v", got, in)
			}
		})
	}
}

func TestDecodeLogCorrupt(t *testing.T) {
	good := appendLog(nil, indexedLog(3))
	tests := []struct {
		name string
		val  []byte
	}{
		{"empty", nil},
		{"unknown version", append([]byte{9}, good[1:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(append([]byte{}, good...), 0)},
		{"data longer than record", append([]byte{logFormatV1, 1, 1, 0}, binary.AppendUvarint(nil, 1000)...)},
		{"bad time flag", append(appendLog(nil, &raft.Log{})[:6], 7)},
		{"nanos out of range", append(append(appendLog(nil, &raft.Log{})[:6], 1, 0), binary.AppendUvarint(nil, uint64(time.Second))...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l raft.Log
			if err := decodeLog(tt.val, &l); !errors.Is(err, errCorruptLog) {
				t.Fatalf("decodeLog error = %v, want errCorruptLog", err)
			}
		})
	}
}

func TestStableStore(t *testing.T) {
	s := openLogStoreT(t, vfs.NewMem(), "log", false)
	tests := []struct {
		name    string
		set     func() error // nil: nothing stored first
		key     string
		want    []byte // for Get; nil with notFound
		wantU64 uint64
		u64Err  bool // GetUint64 fails, but not with "not found"
		notFnd  bool
	}{
		{name: "missing", key: "nope", notFnd: true},
		{name: "bytes", set: func() error { return s.Set([]byte("k"), []byte("v")) },
			key: "k", want: []byte("v"), u64Err: true},
		{name: "empty value is present", set: func() error { return s.Set([]byte("e"), []byte{}) },
			key: "e", want: []byte{}, u64Err: true},
		{name: "empty key", set: func() error { return s.Set(nil, []byte("root")) },
			key: "", want: []byte("root"), u64Err: true},
		{name: "overwrite", set: func() error {
			if err := s.Set([]byte("o"), []byte("old")); err != nil {
				return err
			}
			return s.Set([]byte("o"), []byte("new"))
		}, key: "o", want: []byte("new"), u64Err: true},
		{name: "uint64", set: func() error { return s.SetUint64([]byte("CurrentTerm"), 7) },
			key: "CurrentTerm", want: []byte{0, 0, 0, 0, 0, 0, 0, 7}, wantU64: 7},
		{name: "uint64 max", set: func() error { return s.SetUint64([]byte("m"), math.MaxUint64) },
			key: "m", want: bytes.Repeat([]byte{0xff}, 8), wantU64: math.MaxUint64},
		{name: "key shaped like a log key", set: func() error { return s.Set(logKey(99), []byte("x")) },
			key: string(logKey(99)), want: []byte("x"), u64Err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.set != nil {
				if err := tt.set(); err != nil {
					t.Fatalf("set: %v", err)
				}
			}
			got, err := s.Get([]byte(tt.key))
			u, uerr := s.GetUint64([]byte(tt.key))
			if tt.notFnd {
				// raft tells "missing" from "broken" by this exact text.
				if err == nil || err.Error() != "not found" || got != nil {
					t.Errorf("Get = %q, %v; want nil, \"not found\"", got, err)
				}
				if uerr == nil || uerr.Error() != "not found" || u != 0 {
					t.Errorf("GetUint64 = %d, %v; want 0, \"not found\"", u, uerr)
				}
				return
			}
			if err != nil || got == nil || !bytes.Equal(got, tt.want) {
				t.Errorf("Get = %q, %v; want %q", got, err, tt.want)
			}
			switch {
			case tt.u64Err:
				if uerr == nil || uerr.Error() == "not found" {
					t.Errorf("GetUint64 error = %v, want a decoding error", uerr)
				}
			case uerr != nil || u != tt.wantU64:
				t.Errorf("GetUint64 = %d, %v; want %d", u, uerr, tt.wantU64)
			}
		})
	}
	// Stable keys live in their own table: none of them is a log.
	if last, _ := s.LastIndex(); last != 0 {
		t.Errorf("LastIndex = %d after stable writes, want 0", last)
	}
}

// TestHasExistingState checks the "not found" contract through raft's own
// code rather than by reading the error text ourselves.
func TestHasExistingState(t *testing.T) {
	s := openLogStoreT(t, vfs.NewMem(), "log", false)
	snaps := raft.NewInmemSnapshotStore()
	if has, err := raft.HasExistingState(s, s, snaps); err != nil || has {
		t.Fatalf("empty store: HasExistingState = %v, %v; want false, nil", has, err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}
	if has, err := raft.HasExistingState(s, s, snaps); err != nil || !has {
		t.Fatalf("after term: HasExistingState = %v, %v; want true, nil", has, err)
	}
}

func TestLogStoreReopenOnDisk(t *testing.T) {
	dir := t.TempDir()
	s := openLogStoreT(t, nil, dir, false)
	if err := s.StoreLogs(logRange(1, 100)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, 20); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node-b")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("LastVoteTerm"), 9); err != nil {
		t.Fatal(err)
	}

	s = reopenLogStoreT(t, s, nil, dir)
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 21 || last != 100 {
		t.Fatalf("bounds after reopen = %d-%d, want 21-100", first, last)
	}
	for i := uint64(21); i <= 100; i++ {
		var got raft.Log
		if err := s.GetLog(i, &got); err != nil || !sameLog(&got, indexedLog(i)) {
			t.Fatalf("GetLog(%d) = %+v, %v", i, got, err)
		}
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-b" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if v, err := s.GetUint64([]byte("LastVoteTerm")); err != nil || v != 9 {
		t.Fatalf("GetUint64 = %d, %v", v, err)
	}
}

// TestLogStorePowerCut opens a copy of the filesystem holding only what was
// fsynced, as after a power cut. (pebble v2 replaced NewStrictMem and
// ResetToSyncedState with NewCrashableMem and CrashClone.)
func TestLogStorePowerCut(t *testing.T) {
	tests := []struct {
		name       string
		noSync     bool
		wantLast   uint64 // after the cut
		wantStable bool
	}{
		{name: "synced writes survive", wantLast: 50, wantStable: true},
		// The control: without fsync the same writes are gone, so the test
		// above really tells synced from unsynced.
		{name: "unsynced writes are lost", noSync: true, wantLast: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			s := openLogStoreT(t, fs, "log", tt.noSync)
			for i := uint64(1); i <= 50; i += 10 {
				if err := s.StoreLogs(logRange(i, i+9)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.SetUint64([]byte("CurrentTerm"), 3); err != nil {
				t.Fatal(err)
			}
			crashed := fs.CrashClone(vfs.CrashCloneCfg{}) // synced data only

			c := openLogStoreT(t, crashed, "log", false)
			if last, _ := c.LastIndex(); last != tt.wantLast {
				t.Fatalf("LastIndex after power cut = %d, want %d", last, tt.wantLast)
			}
			for i := uint64(1); i <= tt.wantLast; i++ {
				var got raft.Log
				if err := c.GetLog(i, &got); err != nil || !sameLog(&got, indexedLog(i)) {
					t.Fatalf("GetLog(%d) after power cut = %+v, %v", i, got, err)
				}
			}
			term, err := c.GetUint64([]byte("CurrentTerm"))
			if tt.wantStable && (err != nil || term != 3) {
				t.Fatalf("CurrentTerm after power cut = %d, %v; want 3", term, err)
			}
			if !tt.wantStable && err == nil {
				t.Fatalf("CurrentTerm survived without fsync: %d", term)
			}
		})
	}
}

// TestLogStoreConcurrent reads while raft-like writers append and truncate;
// run with -race.
func TestLogStoreConcurrent(t *testing.T) {
	s := openLogStoreT(t, vfs.NewMem(), "log", true)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the main loop: appends
		defer wg.Done()
		for i := uint64(1); i <= 2000; i += 20 {
			if err := s.StoreLogs(logRange(i, i+19)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() { // the snapshot goroutine: compacts the head
		defer wg.Done()
		for n := 0; n < 50; n++ {
			if last, _ := s.LastIndex(); last > 100 {
				if err := s.DeleteRange(0, last-100); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	for n := 0; n < 500; n++ { // replication: reads
		// first, then last: here last only grows and truncation keeps 100
		// logs, so first <= last must hold even if both move in between.
		first, _ := s.FirstIndex()
		last, _ := s.LastIndex()
		if last != 0 && first > last {
			t.Errorf("first %d > last %d", first, last)
			break
		}
		if last == 0 {
			continue
		}
		var l raft.Log
		if err := s.GetLog(last, &l); err != nil && err != raft.ErrLogNotFound {
			t.Errorf("GetLog(%d): %v", last, err)
			break
		}
	}
	wg.Wait()
	if last, _ := s.LastIndex(); last != 2000 {
		t.Fatalf("LastIndex = %d, want 2000", last)
	}
}

// logStoreTestFSM sums uint64 commands; it exists to drive a real Raft.
type logStoreTestFSM struct {
	mu       sync.Mutex
	sum, num uint64
}

func (f *logStoreTestFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sum += binary.BigEndian.Uint64(l.Data)
	f.num++
	return nil
}

func (f *logStoreTestFSM) state() (sum, num uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sum, f.num
}

func (f *logStoreTestFSM) Snapshot() (raft.FSMSnapshot, error) {
	sum, num := f.state()
	return logStoreTestSnap(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, sum), num)), nil
}

func (f *logStoreTestFSM) Restore(r io.ReadCloser) error {
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil || len(b) != 16 {
		return fmt.Errorf("restore: %d bytes, %v", len(b), err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sum, f.num = binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
	return nil
}

type logStoreTestSnap []byte

func (s logStoreTestSnap) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (logStoreTestSnap) Release() {}

// TestLogStoreUnderRaft runs a single-node Raft on the store: apply, take a
// snapshot (which truncates the log through DeleteRange), apply more, restart
// on the reopened store and check the state comes back.
func TestLogStoreUnderRaft(t *testing.T) {
	dir := t.TempDir()
	snaps := raft.NewInmemSnapshotStore() // outlives the restart, like a disk
	conf := raft.DefaultConfig()
	conf.LocalID = "n1"
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.TrailingLogs = 10
	conf.SnapshotThreshold = 1 << 30 // only the explicit snapshot below
	conf.LogOutput = io.Discard

	start := func(s *LogStore, bootstrap bool) (*raft.Raft, *logStoreTestFSM) {
		t.Helper()
		addr, trans := raft.NewInmemTransport("n1")
		if bootstrap {
			cfg := raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: addr}}}
			if err := raft.BootstrapCluster(conf, s, s, snaps, trans, cfg); err != nil {
				t.Fatalf("bootstrap: %v", err)
			}
		}
		fsm := &logStoreTestFSM{}
		r, err := raft.NewRaft(conf, fsm, s, s, snaps, trans)
		if err != nil {
			t.Fatalf("new raft: %v", err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for r.State() != raft.Leader {
			if time.Now().After(deadline) {
				t.Fatal("no leader after 5s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		return r, fsm
	}
	apply := func(r *raft.Raft, from, to uint64) {
		t.Helper()
		for v := from; v <= to; v++ {
			if err := r.Apply(binary.BigEndian.AppendUint64(nil, v), time.Second).Error(); err != nil {
				t.Fatalf("apply %d: %v", v, err)
			}
		}
	}

	s := openLogStoreT(t, nil, dir, false)
	r, _ := start(s, true)
	apply(r, 1, 100)
	if err := r.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	apply(r, 101, 120)
	if first, _ := s.FirstIndex(); first <= 1 {
		t.Fatalf("FirstIndex = %d after snapshot, want the head truncated", first)
	}
	if err := r.Shutdown().Error(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	s = reopenLogStoreT(t, s, nil, dir)
	r, fsm := start(s, false)
	defer r.Shutdown()
	if err := r.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatalf("barrier: %v", err)
	}
	if sum, num := fsm.state(); sum != 120*121/2 || num != 120 {
		t.Fatalf("state after restart: sum %d over %d commands, want %d over 120", sum, num, 120*121/2)
	}
}

// BenchmarkStoreLogs measures synced appends on the real filesystem, one log
// per batch (a follower under light load) and 64 (a busy leader).
func BenchmarkStoreLogs(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := openLogStoreT(b, nil, b.TempDir(), false)
			data := bytes.Repeat([]byte("m"), 256)
			logs := make([]*raft.Log, batch)
			b.SetBytes(int64(batch * len(data)))
			b.ReportAllocs()
			next := uint64(1)
			for b.Loop() {
				for i := range logs {
					logs[i] = &raft.Log{Index: next, Term: 1, Data: data, AppendedAt: time.Now()}
					next++
				}
				if err := s.StoreLogs(logs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(next-1)/b.Elapsed().Seconds(), "logs/s")
		})
	}
}

// BenchmarkRaftBench runs hashicorp/raft's shared store benchmarks (raft
// ships these, but no conformance test suite).
func BenchmarkRaftBench(b *testing.B) {
	benches := []struct {
		name string
		fn   func(*testing.B, *LogStore)
	}{
		{"FirstIndex", func(b *testing.B, s *LogStore) { raftbench.FirstIndex(b, s) }},
		{"LastIndex", func(b *testing.B, s *LogStore) { raftbench.LastIndex(b, s) }},
		{"GetLog", func(b *testing.B, s *LogStore) { raftbench.GetLog(b, s) }},
		{"StoreLog", func(b *testing.B, s *LogStore) { raftbench.StoreLog(b, s) }},
		{"StoreLogs", func(b *testing.B, s *LogStore) { raftbench.StoreLogs(b, s) }},
		{"DeleteRange", func(b *testing.B, s *LogStore) { raftbench.DeleteRange(b, s) }},
		{"Set", func(b *testing.B, s *LogStore) { raftbench.Set(b, s) }},
		{"Get", func(b *testing.B, s *LogStore) { raftbench.Get(b, s) }},
		{"SetUint64", func(b *testing.B, s *LogStore) { raftbench.SetUint64(b, s) }},
		{"GetUint64", func(b *testing.B, s *LogStore) { raftbench.GetUint64(b, s) }},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			bb.fn(b, openLogStoreT(b, nil, b.TempDir(), false))
		})
	}
}
