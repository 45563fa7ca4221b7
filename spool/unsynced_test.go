package spool_test

import (
	"bytes"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"clustermail/raftstore"
	"clustermail/spool"
	"clustermail/wal"
)

// nodeDB opens a node's shared database on fs with a spool and a Raft log
// store that share one wal.Tracker, as node.Start wires them.
func nodeDB(t *testing.T, fs vfs.FS) (*wal.Tracker, *spool.Spool, *raftstore.LogStore) {
	t.Helper()
	db, err := pebble.Open("db", &pebble.Options{FS: fs, FormatMajorVersion: pebble.FormatNewest, Logger: raftstore.QuietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tr := &wal.Tracker{}
	sp, err := spool.Open("", spool.Options{DB: db, WAL: tr})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := raftstore.OpenLogStore("", raftstore.LogStoreOptions{DB: db, WAL: tr})
	if err != nil {
		t.Fatal(err)
	}
	return tr, sp, ls
}

// TestUnsyncedPutPowerCut checks the reasoning behind PutUnsynced with
// pebble's crashable filesystem (a clone keeps only what was fsynced): an
// unsynced body is lost by a power cut, unless a synced Raft append to the
// same database came after it, or Sync ran; and Sync knows which.
func TestUnsyncedPutPowerCut(t *testing.T) {
	fs := vfs.NewCrashableMem()
	tr, sp, ls := nodeDB(t, fs)
	body := bytes.Repeat([]byte("body line\r\n"), 3000)

	if _, err := sp.PutUnsynced("lost", body); err != nil {
		t.Fatal(err)
	}
	afterCut := func() *spool.Spool {
		_, c, _ := nodeDB(t, fs.CrashClone(vfs.CrashCloneCfg{}))
		return c
	}
	if afterCut().Has("lost") {
		t.Fatal("an unsynced body survived a power cut: the test cannot tell synced from not")
	}

	covered, err := sp.PutUnsynced("covered", body)
	if err != nil {
		t.Fatal(err)
	}
	if err := ls.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("entry")}}); err != nil {
		t.Fatal(err)
	}
	if !tr.Durable(covered) {
		t.Fatal("the tracker does not know the append covered the body: Sync would fsync again")
	}
	c := afterCut()
	if got, err := c.Get("covered"); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("body followed by a synced Raft append: after a power cut %d bytes, %v", len(got), err)
	}
	if !c.Has("lost") {
		t.Fatal("the append also covers the body written before it")
	}

	late, err := sp.PutUnsynced("late", body)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Durable(late) || afterCut().Has("late") {
		t.Fatal("a body written after the last sync survived a power cut")
	}
	if err := sp.Sync(late); err != nil {
		t.Fatal(err)
	}
	if !afterCut().Has("late") {
		t.Fatal("Sync did not make the body durable")
	}
}
