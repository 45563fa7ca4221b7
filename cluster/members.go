package cluster

import (
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/hashicorp/raft"
)

// MemberStatus is a node as gossip and Raft see it together.
type MemberStatus struct {
	Member
	RaftRole string // leader, follower, none
	Suffrage string // voter, nonvoter, none
}

// Members merges the gossip table with the Raft configuration: a Raft
// server gossip never heard of shows as "unknown".
func (c *Cluster) Members() []MemberStatus {
	servers := c.raft.GetConfiguration().Configuration().Servers
	_, leaderID := c.raft.LeaderWithID()
	byID := map[string]raft.Server{}
	for _, s := range servers {
		byID[string(s.ID)] = s
	}
	var out []MemberStatus
	seen := map[string]bool{}
	for _, m := range c.table.list() {
		ms := MemberStatus{Member: m, RaftRole: "none", Suffrage: "none"}
		if s, ok := byID[m.Meta.ID]; ok {
			seen[m.Meta.ID] = true
			ms.Suffrage = suffrage(s.Suffrage)
			ms.RaftRole = "follower"
			if string(leaderID) == m.Meta.ID {
				ms.RaftRole = "leader"
			}
		}
		if m.State == StateAlive && c.ml != nil {
			for _, n := range c.ml.Members() {
				if n.Name == m.Name && n.State == 1 { // memberlist.StateSuspect
					ms.State = StateSuspect
				}
			}
		}
		out = append(out, ms)
	}
	for _, s := range servers {
		if seen[string(s.ID)] {
			continue
		}
		ms := MemberStatus{Member: Member{Name: string(s.ID), State: StateUnknown, Meta: Meta{ID: string(s.ID), RaftAddr: string(s.Address)}},
			RaftRole: "follower", Suffrage: suffrage(s.Suffrage)}
		if s.ID == leaderID {
			ms.RaftRole = "leader"
		}
		out = append(out, ms)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func suffrage(s raft.ServerSuffrage) string {
	if s == raft.Voter {
		return "voter"
	}
	return "nonvoter"
}

// LiveNodes returns the alive members, this node included. With mutual TLS
// only those also in the Raft configuration count: gossip admits any holder
// of the gossip key, and a node the leader refused (see reconcile) must
// hold no message body and own no mailbox.
func (c *Cluster) LiveNodes() []Member {
	var inRaft map[string]bool
	if c.secure {
		inRaft = map[string]bool{c.cfg.ID: true}
		for _, s := range c.raft.GetConfiguration().Configuration().Servers {
			inRaft[string(s.ID)] = true
		}
	}
	var out []Member
	for _, m := range c.table.list() {
		if m.State == StateAlive && (inRaft == nil || inRaft[m.Meta.ID]) {
			out = append(out, m)
		}
	}
	return out
}

// Node returns a member by name.
func (c *Cluster) Node(name string) (Member, bool) {
	for _, m := range c.table.list() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// IsLeader reports whether this node leads.
func (c *Cluster) IsLeader() bool { return c.raft.State() == raft.Leader }

// LeaderAddr returns the leader's cluster address, "" when unknown.
func (c *Cluster) LeaderAddr() string {
	a, _ := c.raft.LeaderWithID()
	return string(a)
}

// Servers is the number of servers in the Raft configuration.
func (c *Cluster) Servers() int { return len(c.raft.GetConfiguration().Configuration().Servers) }

// Status is this node's Raft status.
type Status struct {
	Node, State, Leader, LeaderAddr            string
	Term, CommitIndex, AppliedIndex, LastIndex uint64
	Voters, NonVoters                          []string
}

// Status reports this node's view of Raft.
func (c *Cluster) Status() Status {
	st := c.raft.Stats()
	u := func(k string) uint64 { v, _ := strconv.ParseUint(st[k], 10, 64); return v }
	addr, id := c.raft.LeaderWithID()
	s := Status{Node: c.cfg.Name, State: c.raft.State().String(), LeaderAddr: string(addr), Leader: c.nameOf(string(id)),
		Term: u("term"), CommitIndex: u("commit_index"), AppliedIndex: c.raft.AppliedIndex(), LastIndex: c.raft.LastIndex(),
		Voters: []string{}, NonVoters: []string{}}
	for _, sv := range c.raft.GetConfiguration().Configuration().Servers {
		if sv.Suffrage == raft.Voter {
			s.Voters = append(s.Voters, c.nameOf(string(sv.ID)))
		} else {
			s.NonVoters = append(s.NonVoters, c.nameOf(string(sv.ID)))
		}
	}
	return s
}

func (c *Cluster) nameOf(id string) string {
	if id == "" {
		return ""
	}
	for _, m := range c.table.list() {
		if m.Meta.ID == id {
			return m.Name
		}
	}
	return id
}

func (c *Cluster) idOf(name string) (raft.ServerID, raft.ServerAddress, error) {
	for _, s := range c.raft.GetConfiguration().Configuration().Servers {
		if string(s.ID) == name || c.nameOf(string(s.ID)) == name {
			return s.ID, s.Address, nil
		}
	}
	return "", "", fmt.Errorf("%s is not in the raft configuration", name)
}

// ErrNotLeader is returned by operations that only the leader can run; the
// API forwards them to the leader.
var ErrNotLeader = errors.New("this node is not the leader")

// RemovePeer removes a node (by name or Raft id) from the configuration.
func (c *Cluster) RemovePeer(name string) error {
	if !c.IsLeader() {
		return ErrNotLeader
	}
	id, _, err := c.idOf(name)
	if err != nil {
		return err
	}
	if id == raft.ServerID(c.cfg.ID) {
		return errors.New("the leader cannot remove itself: transfer leadership first, or use cluster leave on it")
	}
	return c.raft.RemoveServer(id, 0, 0).Error()
}

// TransferLeader hands leadership to name, or to the most current voter
// when name is empty.
func (c *Cluster) TransferLeader(name string) error {
	if !c.IsLeader() {
		return ErrNotLeader
	}
	if name == "" {
		return c.raft.LeadershipTransfer().Error()
	}
	id, addr, err := c.idOf(name)
	if err != nil {
		return err
	}
	if id == raft.ServerID(c.cfg.ID) {
		return nil // already leads
	}
	return c.raft.LeadershipTransferToServer(id, addr).Error()
}
