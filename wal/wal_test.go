package wal

import (
	"sync"
	"testing"
)

func TestTracker(t *testing.T) {
	var tr Tracker
	a := tr.Written()
	if tr.Durable(a) {
		t.Fatal("durable before any sync")
	}
	mark := tr.BeforeSync()
	b := tr.Written() // committed while the sync was under way: not covered
	tr.Synced(mark)
	if !tr.Durable(a) || tr.Durable(b) {
		t.Fatalf("after a sync begun between them: a %v, b %v; want true, false", tr.Durable(a), tr.Durable(b))
	}
	tr.Synced(0) // an older sync finishing late does not move the mark back
	if !tr.Durable(a) {
		t.Fatal("the mark went back")
	}
	tr.Synced(tr.BeforeSync())
	if !tr.Durable(b) {
		t.Fatal("b not durable after a later sync")
	}
	var nilT *Tracker
	if nilT.Durable(nilT.Written()) {
		t.Fatal("a nil tracker claims durability")
	}
	nilT.Synced(nilT.BeforeSync())
}

func TestTrackerConcurrent(t *testing.T) {
	var tr Tracker
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				tk := tr.Written()
				tr.Synced(tr.BeforeSync())
				if !tr.Durable(tk) {
					t.Error("a ticket taken before a sync began is not durable after it")
					return
				}
			}
		}()
	}
	wg.Wait()
}
