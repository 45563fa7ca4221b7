package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// Leave departs gracefully (Nomad's Server.Leave): a leader with peers
// removes itself from Raft first; a follower leaves gossip first and waits
// until the leader has removed it. Then gossip and Raft stop.
func (c *Cluster) Leave(ctx context.Context) error {
	c.mu.Lock()
	c.leaving = true
	c.mu.Unlock()
	self := raft.ServerID(c.cfg.ID)
	n := c.Servers()
	if c.IsLeader() && n > 1 {
		if err := c.raft.RemoveServer(self, 0, 0).Error(); err != nil {
			c.log.Warn("leave: leader could not remove itself", "err", err)
		}
	}
	if err := c.ml.Leave(5 * time.Second); err != nil {
		c.log.Warn("leave: gossip leave", "err", err)
	}
	if !c.IsLeader() && n > 1 {
		c.waitRemoved(ctx, self)
	}
	return c.Shutdown()
}

func (c *Cluster) waitRemoved(ctx context.Context, self raft.ServerID) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		in := false
		for _, s := range c.raft.GetConfiguration().Configuration().Servers {
			if s.ID == self {
				in = true
			}
		}
		if !in {
			c.log.Info("leave: removed from the raft configuration")
			return
		}
		select {
		case <-ctx.Done():
			c.log.Warn("leave: timed out waiting for the leader to remove this node")
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Ready reports why the node is not ready yet, or nil: it belongs to the
// Raft configuration, knows a leader, and has applied what it knows is committed.
func (c *Cluster) Ready(applied uint64) string {
	in := false
	for _, s := range c.raft.GetConfiguration().Configuration().Servers {
		if s.ID == raft.ServerID(c.cfg.ID) {
			in = true
		}
	}
	switch {
	case !in:
		return "not in the raft configuration yet"
	case c.LeaderAddr() == "":
		return "no leader known"
	}
	if commit := c.Status().CommitIndex; applied+16 < commit {
		return "catching up"
	}
	return ""
}
