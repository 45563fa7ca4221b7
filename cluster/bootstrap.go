package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
)

// bootstrapLoop forms a new cluster once, as Nomad's maybeBootstrap does:
// only with an empty Raft state, only once --bootstrap-expect nodes with the
// same expectation are alive, and only if none of them already belongs to
// a Raft cluster (then the leader adds us instead).
func (c *Cluster) bootstrapLoop(st Stores) {
	defer c.wg.Done()
	if c.cfg.Expect == 0 {
		return
	}
	has, err := raft.HasExistingState(st.Log, st.Stable, st.Snapshots)
	if err != nil {
		c.log.Error("cannot tell whether raft state exists; not bootstrapping", "err", err)
		return
	}
	if has {
		return
	}
	for {
		done, err := c.tryBootstrap()
		if err != nil {
			c.log.Warn("bootstrap postponed", "err", err)
		}
		if done {
			return
		}
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (c *Cluster) tryBootstrap() (bool, error) {
	if len(c.raft.GetConfiguration().Configuration().Servers) > 0 {
		return true, nil // added by a leader meanwhile
	}
	var servers []raft.Server
	for _, m := range c.table.list() {
		if m.State != StateAlive {
			continue
		}
		if m.Expect != c.cfg.Expect {
			return false, fmt.Errorf("node %s expects %d nodes, this one %d: fix --bootstrap-expect", m.Name, m.Expect, c.cfg.Expect)
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.Meta.ID), Address: raft.ServerAddress(m.Meta.RaftAddr)})
	}
	if len(servers) < c.cfg.Expect {
		return false, nil
	}
	for _, m := range c.table.list() {
		if m.State != StateAlive || m.Name == c.cfg.Name {
			continue
		}
		n, err := c.peerServers(m.Meta.RaftAddr)
		if err != nil {
			return false, fmt.Errorf("ask %s for its raft peers: %w", m.Name, err)
		}
		if n > 0 {
			c.log.Info("an existing cluster was found; waiting to be added by its leader", "via", m.Name)
			return true, nil
		}
	}
	f := c.raft.BootstrapCluster(raft.Configuration{Servers: servers})
	if err := f.Error(); err != nil && err != raft.ErrCantBootstrap {
		return false, fmt.Errorf("bootstrap: %w", err)
	}
	c.log.Info("bootstrapped the cluster", "servers", len(servers))
	return true, nil
}

type peersAnswer struct {
	Servers int `json:"servers"`
}

// peerServers asks a node how many servers its Raft configuration has.
func (c *Cluster) peerServers(raftAddr string) (int, error) {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+raftAddr+"/internal/raft-peers", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.rpc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var a peersAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return 0, err
	}
	return a.Servers, nil
}

func (c *Cluster) handleRaftPeers(w http.ResponseWriter, _ *http.Request) {
	n := len(c.raft.GetConfiguration().Configuration().Servers)
	_ = json.NewEncoder(w).Encode(peersAnswer{Servers: n})
}
