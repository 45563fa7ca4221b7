package queue

import (
	"context"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"clustermail/raftstore"
)

type direct struct {
	f *raftstore.FSM
	i uint64
}

func (d *direct) Apply(_ context.Context, cmd []byte) error {
	d.i++
	if err, ok := d.f.Apply(&raft.Log{Index: d.i, Type: raft.LogCommand, Data: cmd}).(error); ok {
		return err
	}
	return nil
}

func newTestQueue(t *testing.T) *Queue {
	t.Helper()
	f, err := raftstore.OpenFSM("state", raftstore.FSMOptions{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	q := New(f, nil)
	q.Register(f)
	q.SetApplier(&direct{f: f})
	return q
}

func TestQueueLifecycle(t *testing.T) {
	ctx := context.Background()
	q := newTestQueue(t)
	e := Entry{ID: "Q1", From: "s@x.test", Created: time.Now(), Holders: []string{"n1", "n2"}, Recipients: []Recipient{
		{Addr: "a@h.test", Node: "n1"}, {Addr: "b@h.test", Node: "n2"}, {Addr: "c@h.test", Node: "n2"},
	}}
	changed := q.Changed()
	if err := q.Add(ctx, e); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed not signalled on add")
	}
	// A retried proposal of the same entry changes nothing.
	if err := q.Add(ctx, e); err != nil {
		t.Fatal(err)
	}
	// An empty report (the read barrier before a remote delivery) is
	// answered and wakes nobody: nothing changed.
	changed = q.Changed()
	if err := q.Report(ctx, "Q1", "n1", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
		t.Fatal("an empty report signalled a change")
	default:
	}
	assigned := func(n string) []string { ids, err := q.Assigned(n); must(err); return ids }
	if got := assigned("n1"); len(got) != 1 || got[0] != "Q1" {
		t.Fatalf("n1 assigned %v", got)
	}
	if got := assigned("n3"); len(got) != 0 {
		t.Fatalf("n3 assigned %v", got)
	}
	// n1 reporting on n2's recipient is ignored.
	if err := q.Report(ctx, "Q1", "n1", []Result{{Index: 0, State: StateDelivered}, {Index: 1, State: StateDelivered}}); err != nil {
		t.Fatal(err)
	}
	got, _, _ := q.Get("Q1")
	if got.Recipients[0].State != StateDelivered || got.Recipients[1].State != StatePending {
		t.Fatalf("after n1's report: %+v", got.Recipients)
	}
	if len(assigned("n1")) != 0 || len(assigned("n2")) != 1 {
		t.Fatal("work index not updated")
	}
	// A deferral keeps the entry and records the attempt.
	next := time.Now().Add(time.Minute).UTC()
	if err := q.Report(ctx, "Q1", "n2", []Result{{Index: 1, State: StatePending, Reply: "451 busy", NextAttempt: next}}); err != nil {
		t.Fatal(err)
	}
	got, _, _ = q.Get("Q1")
	if r := got.Recipients[1]; r.Attempts != 1 || r.LastReply != "451 busy" || !r.NextAttempt.Equal(next) {
		t.Fatalf("deferred recipient: %+v", r)
	}
	if err := q.Report(ctx, "Q1", "n2", []Result{{Index: 1, State: StateDelivered}, {Index: 2, State: StateFailed}}); err != nil {
		t.Fatal(err)
	}
	if q.Has("Q1") || len(assigned("n2")) != 0 {
		t.Fatal("entry with all recipients final not removed")
	}
	select {
	case id := <-q.Removed():
		if id != "Q1" {
			t.Fatalf("removed %s", id)
		}
	default:
		t.Fatal("removal not announced")
	}
	if err := q.Report(ctx, "Q1", "n2", nil); !raftstore.IsCode(err, raftstore.CodeNotFound) {
		t.Fatalf("report on a removed entry: %v", err)
	}
}

func TestQueueDeleteAndList(t *testing.T) {
	ctx := context.Background()
	q := newTestQueue(t)
	for _, id := range []string{"B", "A", "C"} {
		if err := q.Add(ctx, Entry{ID: id, Recipients: []Recipient{{Addr: "x@y.test", Node: "n1"}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Delete(ctx, "B"); err != nil {
		t.Fatal(err)
	}
	var ids []string
	must(q.List(func(e Entry) bool { ids = append(ids, e.ID); return true }))
	if len(ids) != 2 || ids[0] != "A" || ids[1] != "C" {
		t.Fatalf("list = %v", ids)
	}
	if got, _ := q.Assigned("n1"); len(got) != 2 {
		t.Fatalf("assigned after delete = %v", got)
	}
}

func TestNoticeCommitsOnceWithItsReport(t *testing.T) {
	ctx := context.Background()
	q := newTestQueue(t)
	e := Entry{ID: "M", From: "s@x.test", Recipients: []Recipient{{Addr: "r@far.test", Node: "n1", Remote: true}, {Addr: "q@far.test", Node: "n1", Remote: true}}}
	must(q.Add(ctx, e))
	bounce := &Entry{ID: "M-bounce", Recipients: []Recipient{{Addr: "s@x.test", Node: "n1", Remote: true}}}
	fail := []Result{{Index: 0, State: StateFailed, Reply: "550 5.1.1 no"}}
	must(q.ReportWith(ctx, "M", "n1", fail, ReportOptions{Notice: bounce}))
	if !q.Has("M-bounce") {
		t.Fatal("notice not queued with its report")
	}
	// The bounce is delivered and removed; then the same report is
	// retried (its first answer was lost): no second bounce.
	must(q.Report(ctx, "M-bounce", "n1", []Result{{Index: 0, State: StateDelivered}}))
	must(q.ReportWith(ctx, "M", "n1", fail, ReportOptions{Notice: bounce}))
	if q.Has("M-bounce") {
		t.Fatal("a repeated report queued its notice again")
	}
	// A delay notice is sent once per entry.
	delay := &Entry{ID: "M-delay", Recipients: []Recipient{{Addr: "s@x.test", Node: "n1", Remote: true}}}
	defer1 := []Result{{Index: 1, State: StatePending, Reply: "451 later"}}
	must(q.ReportWith(ctx, "M", "n1", defer1, ReportOptions{Notice: delay, DelayNotified: true}))
	must(q.Report(ctx, "M-delay", "n1", []Result{{Index: 0, State: StateDelivered}}))
	must(q.ReportWith(ctx, "M", "n1", defer1, ReportOptions{Notice: delay, DelayNotified: true}))
	if q.Has("M-delay") {
		t.Fatal("second delay notice")
	}
	got, _, _ := q.Get("M")
	if !got.DelayNotified || got.Pending() != 1 {
		t.Fatalf("entry: %+v", got)
	}
}

func TestReassignAndRetry(t *testing.T) {
	ctx := context.Background()
	q := newTestQueue(t)
	next := time.Now().Add(time.Hour)
	must(q.Add(ctx, Entry{ID: "R", Recipients: []Recipient{
		{Addr: "a@far.test", Node: "dead", Remote: true, NextAttempt: next},
		{Addr: "b@here.test", Node: "dead"},
	}}))
	must(q.Reassign(ctx, "R", "dead", "n2"))
	got, _, _ := q.Get("R")
	if got.Recipients[0].Node != "n2" || got.Recipients[1].Node != "dead" {
		t.Fatalf("after reassign: %+v", got.Recipients)
	}
	if ids, _ := q.Assigned("n2"); len(ids) != 1 {
		t.Fatalf("n2 assigned %v", ids)
	}
	must(q.RetryNow(ctx))
	got, _, _ = q.Get("R")
	if !got.Recipients[0].NextAttempt.IsZero() {
		t.Fatal("retry did not clear the backoff")
	}
	// An operator may decide a recipient assigned to any node.
	must(q.ReportWith(ctx, "R", "operator", []Result{{Index: 1, State: StateFailed}}, ReportOptions{Force: true}))
	got, _, _ = q.Get("R")
	if got.Recipients[1].State != StateFailed {
		t.Fatal("forced report ignored")
	}
	if err := q.RetryNow(ctx, "nope"); !raftstore.IsCode(err, raftstore.CodeNotFound) {
		t.Fatalf("retry of a missing entry: %v", err)
	}
}
