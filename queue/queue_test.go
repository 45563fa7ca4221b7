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
