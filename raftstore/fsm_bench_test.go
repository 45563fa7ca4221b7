package raftstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"clustermail/queue"
	"clustermail/raftstore"
)

// capture is a queue.Applier that keeps the encoded command instead of
// proposing it, so the benchmark applies exactly what a node would log.
type capture struct{ cmd []byte }

func (c *capture) Apply(_ context.Context, cmd []byte) error { c.cmd = cmd; return nil }

// BenchmarkApplyQueueAdd measures FSM.ApplyBatch of queue Add commands, the
// Raft entry every accepted message commits, on an in-memory Pebble:
// batch=1 is one entry per apply (a lightly loaded node), batch=64 is
// Raft's largest apply batch (MaxAppendEntries) under load. The encoding
// (JSON) of the entries is done beforehand and not measured.
func BenchmarkApplyQueueAdd(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			fsm, err := raftstore.OpenFSM("state", raftstore.FSMOptions{FS: vfs.NewMem()})
			if err != nil {
				b.Fatal(err)
			}
			defer fsm.Close()
			q := queue.New(fsm, nil)
			q.Register(fsm)
			c := &capture{}
			proposer := queue.New(fsm, c)
			now := time.Now().UTC()
			entry := func(i int) []byte {
				id := fmt.Sprintf("01BENCH%019d", i)
				e := queue.Entry{ID: id, From: "sender@client.test", Created: now, Size: 1024, Node: "n1",
					Holders:    []string{"n1", "n2"},
					Recipients: []queue.Recipient{{Addr: "user@bench.test", Node: "n2"}}}
				if err := proposer.Add(context.Background(), e); err != nil {
					b.Fatal(err)
				}
				return c.cmd
			}
			// Pre-encode enough entries for the whole run in chunks, so
			// that JSON encoding stays outside the timed loop.
			var index uint64
			logs := make([]*raft.Log, batch)
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n += batch {
				b.StopTimer()
				for i := range logs {
					index++
					logs[i] = &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: entry(int(index))}
				}
				b.StartTimer()
				for i, r := range fsm.ApplyBatch(logs) {
					if r != nil {
						b.Fatalf("entry %d: %v", i, r)
					}
				}
			}
			b.ReportMetric(float64(index)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
