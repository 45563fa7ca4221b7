package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	"clustermail/raftstore"
)

// proposer is this node's group commit of Raft commands. Commands proposed
// while an earlier group is on its way wait for it and then leave together,
// as one multi entry: one forward to the leader and one log record on every
// node, however many commands ride in it.
// An idle node sends a command at once, alone and unchanged; under load
// the groups grow by themselves, as the fsyncs of a write-ahead log do.
type proposer struct {
	c        *Cluster
	send     func([]*proposal) // commits a group: c.commitGroup
	mu       sync.Mutex
	pending  []*proposal
	inflight int
	// gather, while a group of proposals in no hurry waits for company,
	// is closed by the first proposal that is in a hurry (it leaves at
	// once and takes them along) or once company proposals are pending.
	gather  chan struct{}
	company int
}

type proposal struct {
	cmd  []byte
	done chan outcome
}

// outcome is a proposal's result: the index of the entry that carried it
// and its own error.
type outcome struct {
	index uint64
	err   error
}

// Group limits. One group in flight while the next gathers: measured on
// three nodes sharing two CPUs (1 KB, 10 sessions), one in flight gave
// 950 msgs/s and a p99 of 13 ms at 650 msgs/s; two gave 660-840 msgs/s and
// 24 ms, four 717 and 26 ms. Fewer, larger groups cost less CPU per
// command on every node, which is what bounds a shared machine. A group
// stays well under raft.SuggestedMaxDataSize.
const (
	groupsInFlight = 1
	groupCommands  = 256
	groupBytes     = 256 << 10
)

// groupLinger is how long a proposal marked raftstore.MayWait waits for
// others before it leaves alone: a few commits' time. (A variable for tests.)
var groupLinger = 5 * time.Millisecond

// propose commits cmd, alone or in a group, and returns its own outcome:
// nil, its business error, or errRetry when the group could not commit.
// A proposer that reads its write back waits for its replica here, after
// the group has left the way free for the next one: a follower learns of
// a commit only with the leader's next message, which can be a while.
func (p *proposer) propose(ctx context.Context, cmd []byte) error {
	pr := &proposal{cmd: cmd, done: make(chan outcome, 1)}
	company := raftstore.WaitsForCompany(ctx)
	var gather chan struct{}
	p.mu.Lock()
	p.pending = append(p.pending, pr)
	start := p.inflight < groupsInFlight
	switch {
	case start && company > 1:
		p.inflight++
		gather = make(chan struct{})
		p.gather, p.company = gather, company
	case start:
		p.inflight++
	case p.gather != nil && (company == 0 || len(p.pending) >= p.company):
		close(p.gather)
		p.gather = nil
	}
	p.mu.Unlock()
	if start {
		go p.run(gather)
	}
	select {
	case o := <-pr.done:
		if o.index > 0 && raftstore.ReadsBack(ctx) {
			p.c.waitApplied(ctx, o.index)
		}
		return o.err
	case <-ctx.Done():
		// The group may still commit it: every command is idempotent, so
		// the caller's retry, if any, is harmless.
		return errRetry{ctx.Err()}
	}
}

// run sends groups until nothing is pending; with gather, the first one
// only after groupLinger or when gather is closed.
func (p *proposer) run(gather chan struct{}) {
	if gather != nil {
		t := time.NewTimer(groupLinger)
		select {
		case <-t.C:
		case <-gather:
		}
		t.Stop()
		p.mu.Lock()
		if p.gather == gather {
			p.gather = nil
		}
		p.mu.Unlock()
	}
	for {
		p.mu.Lock()
		if len(p.pending) == 0 {
			p.inflight--
			p.mu.Unlock()
			return
		}
		n, size := 0, 0
		for n < len(p.pending) && n < groupCommands && (n == 0 || size+len(p.pending[n].cmd) <= groupBytes) {
			size += len(p.pending[n].cmd)
			n++
		}
		group := p.pending[:n:n]
		p.pending = p.pending[n:]
		p.mu.Unlock()
		p.send(group)
	}
}

// commitGroup commits a group, a lone command as it is and several as a
// multi entry, and hands each proposal its outcome.
func (c *Cluster) commitGroup(group []*proposal) {
	ctx, cancel := context.WithTimeout(c.ctx, holdTimeout)
	defer cancel()
	cmd := group[0].cmd
	if len(group) > 1 {
		cmds := make([][]byte, len(group))
		for i, pr := range group {
			cmds[i] = pr.cmd
		}
		cmd = raftstore.EncodeMulti(cmds)
	}
	index, outcomes, err := c.commit(ctx, cmd)
	if err == nil && len(outcomes) != len(group) {
		err = fmt.Errorf("entry of %d commands: %d outcomes in the answer", len(group), len(outcomes))
	}
	for i, pr := range group {
		if err != nil {
			pr.done <- outcome{err: err}
		} else {
			pr.done <- outcome{index, outcomes[i]}
		}
	}
}

// waitApplied waits, briefly, until the local state reflects index, so
// that a read here right after a write sees it. A follower a heartbeat
// behind catches up in milliseconds; one that does not is not worth
// failing a committed write for.
func (c *Cluster) waitApplied(ctx context.Context, index uint64) {
	if c.applied() >= index {
		return
	}
	deadline := time.NewTimer(2 * time.Second)
	defer deadline.Stop()
	for {
		advanced := c.advanced()
		if c.applied() >= index { // after taking the channel: no wake-up lost
			return
		}
		select {
		case <-advanced:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
