package queue

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"clustermail/raftstore"
)

// recorder applies commands directly and keeps a copy of each.
type recorder struct {
	direct
	cmds [][]byte
}

func (r *recorder) Apply(ctx context.Context, cmd []byte) error {
	r.cmds = append(r.cmds, append([]byte(nil), cmd...))
	return r.direct.Apply(ctx, cmd)
}

// FuzzQueueApply feeds arbitrary log entries to the queue's handlers:
// out-of-range recipient indexes, unknown states, notices, repeated ids.
// A payload that does not decode stops the node on purpose
// (raftstore.Decode panics); anything else must be applied or refused,
// never crash the state machine or the reads after it.
func FuzzQueueApply(f *testing.F) {
	fsm, err := raftstore.OpenFSM("state", raftstore.FSMOptions{FS: vfs.NewMem()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { fsm.Close() })
	q := New(fsm, nil)
	q.Register(fsm)
	rec := &recorder{direct: direct{f: fsm}}
	q.SetApplier(rec)
	ctx := context.Background()
	now := time.Unix(1.7e9, 0).UTC()
	e := Entry{ID: "Q1", From: "s@x.test", Created: now, Node: "n1", Holders: []string{"n1", "n2"}, Recipients: []Recipient{
		{Addr: "a@h.test", Node: "n1"}, {Addr: "b@r.test", Node: "n2", Remote: true}}}
	_ = q.Add(ctx, e)
	_ = q.Report(ctx, "Q1", "n1", []Result{{Index: 0, State: StateDelivered}, {Index: 5, State: StateFailed}})
	_ = q.ReportWith(ctx, "Q1", "n2", []Result{{Index: 1, State: StatePending, Reply: "451 later", NextAttempt: now.Add(time.Minute)}},
		ReportOptions{DelayNotified: true, Notice: &Entry{ID: "Q2", Created: now, Node: "n2", Recipients: []Recipient{{Addr: "s@x.test", Node: "n1"}}}})
	_ = q.Reassign(ctx, "Q1", "n2", "n3")
	_ = q.RetryNow(ctx, "Q1")
	_ = q.RetryNow(ctx)
	_ = q.Delete(ctx, "Q2")
	for _, c := range rec.cmds {
		f.Add(c)
	}
	f.Add([]byte{byte(cmdUpdate), '{', '"', 'i', 'd', '"', ':', '"', 'Q', '1', '"', ',', '"', 'r', 'e', 's', 'u', 'l', 't', 's', '"', ':', '[', '{', '"', 'i', 'n', 'd', 'e', 'x', '"', ':', '-', '1', '}', ']', '}'})
	index := rec.i
	f.Fuzz(func(t *testing.T, data []byte) {
		index++
		func() {
			defer func() {
				if v := recover(); v != nil {
					if re, ok := v.(runtime.Error); ok {
						t.Fatalf("entry %q crashed the state machine: %v", data, re)
					}
				}
			}()
			fsm.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
		}()
		_, _, _ = q.Get("Q1")
		_, _ = q.Assigned("n1")
		_ = q.List(func(Entry) bool { return true })
	})
}
