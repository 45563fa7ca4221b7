// Package wal tracks which writes to a node's Pebble database a later
// fsync of its write-ahead log has made durable.
//
// All of a node's stores share one Pebble database, hence one WAL, written
// in commit order: a commit made with pebble.Sync returns once the log is
// on disk up to its own record, and so up to every record committed before
// it began. A write that need not be durable at once (a body this node
// holds, before its queue entry commits) is committed without fsync and
// takes a ticket; the synced commits that follow (the Raft log's above
// all) advance the mark, and the writer fsyncs itself only if none did.
package wal

import "sync/atomic"

// Tracker orders tickets of unsynced writes against synced commits. The
// zero value is ready; a nil *Tracker tracks nothing and knows nothing.
type Tracker struct {
	seq    atomic.Uint64 // tickets handed out
	synced atomic.Uint64 // every ticket up to this one is durable
}

// Written returns the ticket of a write committed without fsync. Call it
// after the commit has returned.
func (t *Tracker) Written() uint64 {
	if t == nil {
		return 0
	}
	return t.seq.Add(1)
}

// BeforeSync returns the mark to pass to Synced: call it before a synced
// commit begins, so that every ticket it covers was committed earlier.
func (t *Tracker) BeforeSync() uint64 {
	if t == nil {
		return 0
	}
	return t.seq.Load()
}

// Synced records that a synced commit, begun after BeforeSync returned
// mark, has returned without error.
func (t *Tracker) Synced(mark uint64) {
	if t == nil {
		return
	}
	for {
		cur := t.synced.Load()
		if mark <= cur || t.synced.CompareAndSwap(cur, mark) {
			return
		}
	}
}

// Durable reports whether a synced commit has covered ticket.
func (t *Tracker) Durable(ticket uint64) bool {
	return t != nil && t.synced.Load() >= ticket
}
