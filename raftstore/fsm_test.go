package raftstore

import (
	"bytes"
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

type kv struct{ K, V string }

const cmdPut CommandType = 1

func openTestFSM(t *testing.T, fs vfs.FS) *FSM {
	t.Helper()
	f, err := OpenFSM("state", FSMOptions{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	f.Register(cmdPut, func(tx *Tx, p []byte) error {
		var x kv
		Decode(p, &x)
		if x.K == "" {
			return Errorf(CodeInvalid, "empty key")
		}
		return tx.Set([]byte{0x3f, x.K[0]}, []byte(x.V))
	})
	return f
}

func entry(t *testing.T, index uint64, ct CommandType, v any) *raft.Log {
	t.Helper()
	b, err := Encode(ct, v)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Type: raft.LogCommand, Data: b}
}

func TestFSMApplySkipsReplayedEntries(t *testing.T) {
	fs := vfs.NewMem()
	f := openTestFSM(t, fs)
	f.ApplyBatch([]*raft.Log{entry(t, 1, cmdPut, kv{"a", "1"}), entry(t, 2, cmdPut, kv{"b", "2"})})
	if f.AppliedIndex() != 2 {
		t.Fatalf("applied = %d", f.AppliedIndex())
	}
	f.Close()

	f = openTestFSM(t, fs)
	defer f.Close()
	if f.AppliedIndex() != 2 {
		t.Fatalf("applied after reopen = %d", f.AppliedIndex())
	}
	// Raft replays entry 2 with different content after a restart; the
	// state already holds it, so it must be skipped.
	f.ApplyBatch([]*raft.Log{entry(t, 2, cmdPut, kv{"b", "changed"}), entry(t, 3, cmdPut, kv{"c", "3"})})
	for k, want := range map[string]string{"a": "1", "b": "2", "c": "3"} {
		v, ok, err := f.Get([]byte{0x3f, k[0]})
		if err != nil || !ok || string(v) != want {
			t.Errorf("%s = %q %v %v, want %q", k, v, ok, err, want)
		}
	}
}

func TestFSMBusinessErrorAndConfigEntries(t *testing.T) {
	f := openTestFSM(t, vfs.NewMem())
	defer f.Close()
	resp := f.ApplyBatch([]*raft.Log{
		entry(t, 1, cmdPut, kv{"", "x"}),
		{Index: 2, Type: raft.LogConfiguration},
		entry(t, 3, cmdPut, kv{"a", "1"}),
	})
	if !IsCode(resp[0].(error), CodeInvalid) {
		t.Fatalf("resp[0] = %v", resp[0])
	}
	if resp[2] != nil {
		t.Fatalf("resp[2] = %v", resp[2])
	}
	if f.AppliedIndex() != 3 {
		t.Fatalf("applied = %d", f.AppliedIndex())
	}
}

func TestFSMUnknownCommandTypes(t *testing.T) {
	f := openTestFSM(t, vfs.NewMem())
	defer f.Close()
	// A type an older node does not know but may skip.
	if r := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{byte(IgnoreUnknown | 5), '{', '}'}}); r != nil {
		t.Fatalf("ignorable unknown type: %v", r)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("unknown type without the ignore flag must stop the node")
		}
	}()
	f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: []byte{99, '{', '}'}})
}

// TestFSMRegisterPanics: registering a type twice, the reserved multi type
// or a type with the request-id bit is a programming error.
func TestFSMRegisterPanics(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  CommandType
	}{{"twice", cmdPut}, {"multi", cmdMulti}, {"request-id bit", cmdPut | withRequestID}} {
		t.Run(tc.name, func(t *testing.T) {
			f := openTestFSM(t, vfs.NewMem())
			defer f.Close()
			defer func() {
				if recover() == nil {
					t.Fatalf("Register(%d) did not panic", tc.typ)
				}
			}()
			f.Register(tc.typ, func(*Tx, []byte) error { return nil })
		})
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "test" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	src := openTestFSM(t, vfs.NewMem())
	defer src.Close()
	for i := uint64(1); i <= 50; i++ {
		src.Apply(entry(t, i, cmdPut, kv{string(rune('a' + i%26)), string(rune('A' + i%26))}))
	}
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the snapshot must not leak into it.
	src.Apply(entry(t, 51, cmdPut, kv{"z", "late"}))
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	dst := openTestFSM(t, vfs.NewMem())
	defer dst.Close()
	dst.Apply(entry(t, 1, cmdPut, kv{"#", "stale"}))
	if err := dst.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if dst.AppliedIndex() != 50 {
		t.Fatalf("applied after restore = %d", dst.AppliedIndex())
	}
	if _, ok, _ := dst.Get([]byte{0x3f, '#'}); ok {
		t.Error("restore kept state that was not in the snapshot")
	}
	v, _, _ := dst.Get([]byte{0x3f, 'z'})
	if string(v) != "Z" {
		t.Errorf("z = %q, want the snapshot's value Z", v)
	}
}

func TestFSMRestoreRejectsTruncatedSnapshot(t *testing.T) {
	src := openTestFSM(t, vfs.NewMem())
	defer src.Close()
	src.Apply(entry(t, 1, cmdPut, kv{"a", "1"}))
	snap, _ := src.Snapshot()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	b := sink.Bytes()
	dst := openTestFSM(t, vfs.NewMem())
	defer dst.Close()
	if err := dst.Restore(io.NopCloser(bytes.NewReader(b[:len(b)-1]))); err == nil {
		t.Fatal("truncated snapshot restored without error")
	}
}

// TestRetriedCommandAppliesOnce: the same entry proposed twice (a retry
// after a lost answer) applies once and answers the same both times.
func TestRetriedCommandAppliesOnce(t *testing.T) {
	f := openTestFSM(t, vfs.NewMem())
	defer f.Close()
	count := 0
	f.Register(2, func(tx *Tx, p []byte) error {
		count++
		if count > 1 {
			return Errorf(CodeConflict, "already exists")
		}
		return nil
	})
	cmd, _ := Encode(2, kv{"a", "1"})
	if r := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: cmd}); r != nil {
		t.Fatalf("first: %v", r)
	}
	if r := f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: cmd}); r != nil || count != 1 {
		t.Fatalf("retry applied again: %v (count %d)", r, count)
	}
	bad, _ := Encode(cmdPut, kv{"", "x"})
	r1 := f.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: bad})
	r2 := f.Apply(&raft.Log{Index: 4, Type: raft.LogCommand, Data: bad})
	if !IsCode(r1.(error), CodeInvalid) || !IsCode(r2.(error), CodeInvalid) {
		t.Fatalf("business error not replayed: %v %v", r1, r2)
	}
	// Another proposal of the same content is a new command.
	cmd2, _ := Encode(2, kv{"a", "1"})
	if r := f.Apply(&raft.Log{Index: 5, Type: raft.LogCommand, Data: cmd2}); r == nil {
		t.Fatal("a new proposal was taken for a retry")
	}
}

// TestSharedDatabaseRestoreKeepsOtherStores: in a node's shared database,
// snapshots carry and restores replace only the replicated state's range.
func TestSharedDatabaseRestoreKeepsOtherStores(t *testing.T) {
	db, err := pebble.Open("shared", &pebble.Options{FS: vfs.NewMem(), FormatMajorVersion: pebble.FormatNewest})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	other := []byte{0x85, 'b', 'o', 'd', 'y'}
	if err := db.Set(other, []byte("mail"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFSM("", FSMOptions{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	f.Register(cmdPut, func(tx *Tx, p []byte) error {
		var x kv
		Decode(p, &x)
		return tx.Set([]byte{0x3f, x.K[0]}, []byte(x.V))
	})
	f.Apply(entry(t, 1, cmdPut, kv{"a", "1"}))
	snap, _ := f.Snapshot()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if bytes.Contains(sink.Bytes(), []byte("mail")) {
		t.Fatal("the snapshot carried another store's keys")
	}
	if err := f.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if v, c, err := db.Get(other); err != nil || string(v) != "mail" {
		t.Fatalf("another store's key after restore: %q %v", v, err)
	} else {
		c.Close()
	}
	if err := f.Close(); err != nil { // must not close the shared database
		t.Fatal(err)
	}
	if _, c, err := db.Get(other); err != nil {
		t.Fatalf("shared database closed by the FSM: %v", err)
	} else {
		c.Close()
	}
}

// TestRetryRecognisedAfterReopenAndRestore: the in-memory set of request
// ids is rebuilt from the state, so a retry that arrives after a restart,
// or on a node that installed a snapshot, is still applied once.
func TestRetryRecognisedAfterReopenAndRestore(t *testing.T) {
	fs := vfs.NewMem()
	count := 0
	open := func() *FSM {
		f := openTestFSM(t, fs)
		f.Register(2, func(tx *Tx, p []byte) error { count++; return nil })
		return f
	}
	f := open()
	cmd, _ := Encode(2, kv{"a", "1"})
	if r := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: cmd}); r != nil {
		t.Fatal(r)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	f.Close()

	f = open()
	if r := f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: cmd}); r != nil || count != 1 {
		t.Fatalf("retry after reopen applied again: %v (count %d)", r, count)
	}
	f.Close()

	other := openTestFSM(t, vfs.NewMem())
	defer other.Close()
	other.Register(2, func(tx *Tx, p []byte) error { count++; return nil })
	if err := other.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	if r := other.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: cmd}); r != nil || count != 1 {
		t.Fatalf("retry after restore applied again: %v (count %d)", r, count)
	}
}
