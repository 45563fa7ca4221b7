package main

import (
	"context"
	"fmt"
	"strconv"

	"clustermail/api"

	"github.com/spf13/cobra"
)

// newClusterCmd returns "clustermail cluster": membership and Raft state.
func newClusterCmd() *cobra.Command {
	opts := &apiOptions{}
	cmd := newGroupCmd("cluster", "Inspect and change cluster membership and Raft leadership; save and restore its state", opts)
	cmd.AddCommand(
		&cobra.Command{
			Use:     "members",
			Short:   "List the cluster's nodes as seen by gossip and Raft",
			Example: "  clustermail cluster members\n  clustermail cluster members --api http://node2:8080 --json",
			Args:    usageArgs(cobra.NoArgs),
			RunE:    opts.runE(opts.clusterMembers),
		},
		&cobra.Command{
			Use:     "status",
			Short:   "Show the Raft status of the node at --api",
			Example: "  clustermail cluster status\n  clustermail cluster status --json",
			Args:    usageArgs(cobra.NoArgs),
			RunE:    opts.runE(opts.clusterStatus),
		},
		&cobra.Command{
			Use:   "leave",
			Short: "Make the node at --api leave the cluster gracefully and stop",
			Long: "Make the node at --api leave the cluster gracefully: it hands over leadership\n" +
				"if it has it, leaves the Raft configuration and gossip, then stops.\n" +
				"Point --api at the node that should go, not at any node.",
			Example: "  clustermail cluster leave --api http://node3:8080",
			Args:    usageArgs(cobra.NoArgs),
			RunE:    opts.runE(opts.clusterLeave),
		},
		&cobra.Command{
			Use:   "remove-peer NAME",
			Short: "Remove a node from the Raft configuration",
			Long: "Remove a node from the Raft configuration, typically one that died and will\n" +
				"not come back. A node that is still running should use \"cluster leave\".",
			Example: "  clustermail cluster remove-peer node3",
			Args:    usageArgs(cobra.ExactArgs(1)),
			RunE:    opts.runE(opts.clusterRemovePeer),
		},
		&cobra.Command{
			Use:   "transfer-leader [NAME]",
			Short: "Move Raft leadership to NAME, or to any other voter",
			Example: "  clustermail cluster transfer-leader\n" +
				"  clustermail cluster transfer-leader node2",
			Args: usageArgs(cobra.MaximumNArgs(1)),
			RunE: opts.runE(opts.clusterTransferLeader),
		},
		newSnapshotCmd(opts),
	)
	return cmd
}

func (o *apiOptions) clusterMembers(ctx context.Context, c *api.Client, cmd *cobra.Command, _ []string) error {
	members, err := c.Members(ctx)
	if err != nil {
		return opError("cluster members", "", err)
	}
	if o.json {
		return printJSON(cmdOut(cmd), members)
	}
	if len(members) == 0 {
		_, err := fmt.Fprintln(cmdOut(cmd), "no members")
		return err
	}
	t := newTable(cmdOut(cmd), "name", "gossip-addr", "gossip-state", "raft-role", "suffrage", "version")
	for _, m := range members {
		t.row(m.Name, m.GossipAddr, m.GossipState, m.RaftRole, m.Suffrage, m.Version)
	}
	return t.flush()
}

func (o *apiOptions) clusterStatus(ctx context.Context, c *api.Client, cmd *cobra.Command, _ []string) error {
	st, err := c.Status(ctx)
	if err != nil {
		return opError("cluster status", "", err)
	}
	if o.json {
		return printJSON(cmdOut(cmd), st)
	}
	return printKV(cmdOut(cmd), statusKV(st))
}

// statusKV is the detail view of a Status, shared by status and
// transfer-leader.
func statusKV(st api.Status) []kv {
	return []kv{
		{"node", st.Node},
		{"state", st.State},
		{"leader", leaderString(st)},
		{"term", strconv.FormatUint(st.Term, 10)},
		{"commit index", strconv.FormatUint(st.CommitIndex, 10)},
		{"applied index", strconv.FormatUint(st.AppliedIndex, 10)},
		{"last log index", strconv.FormatUint(st.LastLogIndex, 10)},
		{"voters", joinOr(st.Voters, "none")},
		{"non-voters", joinOr(st.NonVoters, "none")},
	}
}

// leaderString renders the leader as "name (addr)", or says there is none:
// an empty leader is the interesting case during an election.
func leaderString(st api.Status) string {
	switch {
	case st.Leader == "" && st.LeaderAddr == "":
		return "none known"
	case st.LeaderAddr == "":
		return st.Leader
	case st.Leader == "":
		return st.LeaderAddr
	}
	return st.Leader + " (" + st.LeaderAddr + ")"
}

func (o *apiOptions) clusterLeave(ctx context.Context, c *api.Client, cmd *cobra.Command, _ []string) error {
	// Ask who we are talking to first, so the output names the node that
	// is going away; --api is easy to get wrong and this is not undoable.
	// Best effort: if the status fails, Leave will report the real error.
	who := c.Base()
	if st, err := c.Status(ctx); err == nil && st.Node != "" {
		who = st.Node + " (" + c.Base() + ")"
	}
	if err := c.Leave(ctx); err != nil {
		return opError("cluster leave", who, err)
	}
	if o.json {
		return nil
	}
	_, err := fmt.Fprintf(cmdOut(cmd), "node %s left the cluster and is stopping\n", who)
	return err
}

func (o *apiOptions) clusterRemovePeer(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
	name := args[0]
	if err := c.RemovePeer(ctx, name); err != nil {
		return opError("cluster remove-peer", name, err)
	}
	if o.json {
		return nil
	}
	_, err := fmt.Fprintf(cmdOut(cmd), "removed %s from the Raft configuration\n", name)
	return err
}

func (o *apiOptions) clusterTransferLeader(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
	var name string
	if len(args) == 1 {
		name = args[0]
	}
	st, err := c.TransferLeader(ctx, name)
	if err != nil {
		return opError("cluster transfer-leader", name, err)
	}
	if o.json {
		return printJSON(cmdOut(cmd), st)
	}
	if st.Leader == "" && st.LeaderAddr == "" {
		_, err = fmt.Fprintf(cmdOut(cmd), "leadership transferred; no leader elected yet (term %d)\n", st.Term)
		return err
	}
	_, err = fmt.Fprintf(cmdOut(cmd), "leadership transferred: the leader is now %s (term %d)\n", leaderString(st), st.Term)
	return err
}
