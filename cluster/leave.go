package cluster

import (
	"context"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
)

// Leave departs gracefully (Nomad's Server.Leave): a leader with peers
// removes itself from Raft first; a follower leaves gossip first and waits
// until the leader has removed it. Then gossip and Raft stop.
func (c *Cluster) Leave(ctx context.Context) error {
	c.mu.Lock()
	c.cfg.Meta.Leaving = true
	c.mu.Unlock()
	if err := c.ml.UpdateNode(2 * time.Second); err != nil {
		c.log.Warn("leave: announce", "err", err)
	}
	self := raft.ServerID(c.cfg.ID)
	n := c.Servers()
	if c.IsLeader() && n > 1 {
		if err := c.raft.RemoveServer(self, 0, 0).Error(); err != nil {
			c.log.Warn("leave: leader could not remove itself", "err", err)
		}
	} else if n > 1 {
		c.askRemoval(ctx)
	}
	if err := c.ml.Leave(5 * time.Second); err != nil {
		c.log.Warn("leave: gossip leave", "err", err)
	}
	if !c.IsLeader() && n > 1 {
		c.waitRemoved(ctx, self)
	}
	return c.Shutdown()
}

// askRemoval asks the leader to take this node out of the Raft
// configuration, retrying while leadership moves.
func (c *Cluster) askRemoval(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		addr := c.LeaderAddr()
		if addr != "" {
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/internal/leave/"+c.cfg.ID, nil)
			resp, err := c.rpc.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusNoContent {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	c.log.Warn("leave: the leader did not confirm the removal; it will see this node leave through gossip")
}

// handleLeave is the leader's end of askRemoval.
func (c *Cluster) handleLeave(w http.ResponseWriter, r *http.Request) {
	if !c.IsLeader() {
		http.Error(w, "not the leader", http.StatusServiceUnavailable)
		return
	}
	id := raft.ServerID(r.PathValue("id"))
	if id == raft.ServerID(c.cfg.ID) {
		http.Error(w, "the leader leaves by itself", http.StatusConflict)
		return
	}
	if err := c.raft.RemoveServer(id, 0, 0).Error(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	c.log.Info("removed a departing node", "id", id)
	w.WriteHeader(http.StatusNoContent)
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
	// A restarted follower knows no commit index until the leader's first
	// append: until then its state may be behind what it acknowledged
	// before the crash.
	commit := c.Status().CommitIndex
	switch {
	case commit == 0:
		return "commit index not known yet"
	case applied+16 < commit:
		return "catching up"
	}
	return ""
}
