package raftstore

import (
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// requestSet holds, in memory, every request id the state remembers (at
// most requestWindow of them, a few MiB). Nearly every id a command carries
// is new, and proving that from Pebble costs a memtable search per command
// that finds nothing (a bloom filter does not cover memtables). The set
// answers those misses; a hit still reads Pebble for the outcome. It may
// hold more than the state (a batch that fails to commit panics the node
// anyway), never less.
type requestSet struct {
	mu  sync.Mutex
	ids map[string]struct{}
}

func (s *requestSet) has(rid []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ids[string(rid)]
	return ok
}

func (s *requestSet) add(rid []byte) {
	s.mu.Lock()
	s.ids[string(rid)] = struct{}{}
	s.mu.Unlock()
}

func (s *requestSet) remove(rid []byte) {
	s.mu.Lock()
	delete(s.ids, string(rid))
	s.mu.Unlock()
}

// load replaces the set with the ids stored in db, after opening or a restore.
func (s *requestSet) load(db *pebble.DB) error {
	lower := []byte{PrefixMeta, tblRequest}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{PrefixMeta, tblRequest + 1}})
	if err != nil {
		return fmt.Errorf("load request ids: %w", err)
	}
	ids := map[string]struct{}{}
	for it.First(); it.Valid(); it.Next() {
		ids[string(it.Key()[len(lower):])] = struct{}{}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("load request ids: %w", err)
	}
	s.mu.Lock()
	s.ids = ids
	s.mu.Unlock()
	return nil
}
