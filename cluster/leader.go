package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// reconcileInterval is the periodic full reconcile beside the event-driven
// one, because gossip events can be dropped.
const reconcileInterval = 5 * time.Second

// monitorLeadership owns the leader's duties: started on gaining
// leadership (after a barrier, so the state is current), stopped on losing it.
func (c *Cluster) monitorLeadership() {
	defer c.wg.Done()
	var stop context.CancelFunc
	done := make(chan struct{})
	close(done)
	for {
		select {
		case <-c.ctx.Done():
			if stop != nil {
				stop()
				<-done
			}
			return
		case leader := <-c.notify:
			if leader && stop == nil {
				var ctx context.Context
				ctx, stop = context.WithCancel(c.ctx)
				done = make(chan struct{})
				go func() { defer close(done); c.leaderLoop(ctx) }()
			} else if !leader && stop != nil {
				stop()
				<-done
				stop = nil
				c.log.Info("lost leadership")
			}
		}
	}
}

func (c *Cluster) leaderLoop(ctx context.Context) {
	for {
		if err := c.raft.Barrier(time.Minute).Error(); err == nil {
			break
		} else if ctx.Err() != nil {
			return
		} else {
			c.log.Warn("leader barrier failed; retrying", "err", err)
		}
	}
	c.log.Info("established leadership", "term", c.raft.Stats()["term"])
	c.mu.Lock()
	duties := append([]func(context.Context){}, c.duties...)
	c.mu.Unlock()
	done := make(chan struct{})
	for _, d := range duties {
		go func() { defer func() { done <- struct{}{} }(); d(ctx) }()
	}
	defer func() {
		for range duties {
			<-done
		}
	}()
	t := time.NewTicker(reconcileInterval)
	defer t.Stop()
	for {
		c.reconcile()
		select {
		case <-ctx.Done():
			return
		case <-c.events:
		case <-t.C:
		}
	}
}

// OnLeader registers a duty of the leader: fn runs from the moment this node
// establishes leadership until ctx ends with it.
func (c *Cluster) OnLeader(fn func(ctx context.Context)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.duties = append(c.duties, fn)
}

// reconcile brings the Raft configuration in line with gossip: alive nodes
// in (as voters up to maxVoters), departed nodes out at once, dead nodes
// out after the grace period and only while quorum stays safe.
func (c *Cluster) reconcile() {
	if c.raft.State() != raft.Leader {
		return
	}
	fut := c.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		c.log.Warn("reconcile: read configuration", "err", err)
		return
	}
	servers := fut.Configuration().Servers
	byID := map[raft.ServerID]raft.Server{}
	voters := 0
	for _, s := range servers {
		byID[s.ID] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	members := c.table.list()
	known := map[raft.ServerID]Member{}
	for _, m := range members {
		known[raft.ServerID(m.Meta.ID)] = m
	}
	healthy := 0
	for _, s := range servers {
		if m, ok := known[s.ID]; ok && s.Suffrage == raft.Voter && (m.State == StateAlive || m.State == StateSuspect) {
			healthy++
		}
	}
	for _, m := range members {
		id := raft.ServerID(m.Meta.ID)
		s, in := byID[id]
		switch m.State {
		case StateAlive:
			if !in {
				if c.secure && id != raft.ServerID(c.cfg.ID) {
					// Gossip admits anyone with the gossip key; Raft only a
					// node whose cluster port passes mutual TLS both ways.
					if at, ok := c.refused[id]; ok && time.Since(at) < time.Minute {
						continue
					}
					if _, err := c.peerServers(m.Meta.RaftAddr); err != nil {
						if c.refused == nil {
							c.refused = map[raft.ServerID]time.Time{}
						}
						c.refused[id] = time.Now()
						c.log.Warn("reconcile: not adding a node whose cluster port fails mutual TLS", "node", m.Name,
							"addr", m.Meta.RaftAddr, "err", err)
						continue
					}
					delete(c.refused, id)
				}
				c.removeStaleAddress(servers, id, m.Meta.RaftAddr)
				if voters < maxVoters {
					c.change("add voter", m.Name, c.raft.AddVoter(id, raft.ServerAddress(m.Meta.RaftAddr), 0, 0))
					voters++
				} else {
					c.change("add non-voter", m.Name, c.raft.AddNonvoter(id, raft.ServerAddress(m.Meta.RaftAddr), 0, 0))
				}
			} else if s.Suffrage != raft.Voter && voters < maxVoters {
				c.change("promote to voter", m.Name, c.raft.AddVoter(id, s.Address, 0, 0))
				voters++
			} else if s.Address != raft.ServerAddress(m.Meta.RaftAddr) {
				c.change("update address", m.Name, c.raft.AddVoter(id, raft.ServerAddress(m.Meta.RaftAddr), 0, 0))
			}
		case StateLeft:
			if in && id != raft.ServerID(c.cfg.ID) {
				c.change("remove departed", m.Name, c.raft.RemoveServer(id, 0, 0))
			}
		case StateDead:
			if in && id != raft.ServerID(c.cfg.ID) && time.Since(m.Since) > c.cfg.DeadGrace {
				if s.Suffrage == raft.Voter && !safeToRemove(voters, healthy) {
					c.log.Warn("dead voter kept: removing it would risk quorum", "node", m.Name, "voters", voters, "healthy", healthy)
					continue
				}
				c.change("remove dead", m.Name, c.raft.RemoveServer(id, 0, 0))
				if s.Suffrage == raft.Voter {
					voters--
				}
			}
		}
	}
}

// safeToRemove: after removing one unhealthy voter, the healthy voters must
// still be a majority of the smaller configuration.
func safeToRemove(voters, healthy int) bool {
	return healthy >= (voters-1)/2+1
}

// removeStaleAddress drops a server that has this node's address under
// another id (a node that was wiped and came back), as Nomad does, so two
// entries never point at one address.
func (c *Cluster) removeStaleAddress(servers []raft.Server, id raft.ServerID, addr string) {
	for _, s := range servers {
		if s.Address == raft.ServerAddress(addr) && s.ID != id {
			c.change("remove stale id", string(s.ID), c.raft.RemoveServer(s.ID, 0, 0))
		}
	}
}

func (c *Cluster) change(what, node string, f raft.IndexFuture) {
	if err := f.Error(); err != nil {
		c.log.Warn("reconcile: "+what+" failed", "node", node, "err", err)
		return
	}
	c.log.Info("reconcile: "+what, "node", node)
}
