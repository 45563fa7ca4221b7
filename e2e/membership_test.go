package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"clustermail/api"
)

// addNode starts one more node that joins the cluster (no bootstrap).
func (c *testCluster) addNode(extra ...string) *node {
	c.t.Helper()
	p := freePorts(c.t, 4)
	i := len(c.nodes) + 1
	nd := &node{t: c.t, name: "n" + strconv.Itoa(i), dir: filepath.Join(c.t.TempDir(), "n"+strconv.Itoa(i)),
		gossip: addr(p[0]), raft: addr(p[1]), api: addr(p[2]), smtp: addr(p[3]), extra: append(c.nodes[0].extra, extra...),
		join: []string{c.nodes[0].gossip, c.nodes[1].gossip}}
	c.nodes = append(c.nodes, nd)
	nd.start()
	nd.waitReady(60 * time.Second)
	return nd
}

// cli runs the real binary's operator command against a node's API.
func cli(t *testing.T, n *node, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, append(args, "--api", "http://"+n.api)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func members(t *testing.T, n *node) map[string]api.Member {
	t.Helper()
	out, err := cli(t, n, "cluster", "members", "--json")
	if err != nil {
		t.Fatalf("cluster members: %v: %s", err, out)
	}
	var ms []api.Member
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		t.Fatalf("cluster members --json: %v: %s", err, out)
	}
	m := map[string]api.Member{}
	for _, x := range ms {
		m[x.Name] = x
	}
	return m
}

func expectSuffrage(t *testing.T, via *node, want map[string]string) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("suffrage %v", want), func() error {
		ms := members(t, via)
		for name, s := range want {
			if ms[name].Suffrage != s {
				return fmt.Errorf("%s is %q, want %q (members: %+v)", name, ms[name].Suffrage, s, ms)
			}
		}
		return nil
	})
}

// TestMembershipGrowsAndShrinks: voters up to five, non-voters beyond;
// a graceful leave (SIGTERM, or the leave command) removes a node at once;
// a node restarted on its data dir rejoins with its state.
func TestMembershipGrowsAndShrinks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := newCluster(t, 3)
	n1 := c.nodes[0]
	n4 := c.addNode()
	expectSuffrage(t, n1, map[string]string{"n4": "voter"})
	c.addNode()
	n6 := c.addNode()
	expectSuffrage(t, n1, map[string]string{"n1": "voter", "n2": "voter", "n3": "voter", "n4": "voter", "n5": "voter", "n6": "nonvoter"})

	// A write through the non-voter reaches everyone.
	if _, err := n6.client().AddDomain(ctx(t), "grow.test"); err != nil {
		t.Fatal(err)
	}
	// SIGTERM is a graceful leave: the node is removed from Raft at once,
	// and the non-voter is promoted to keep five voters.
	n4.signal(syscall.SIGTERM)
	expectSuffrage(t, n1, map[string]string{"n4": "none", "n6": "voter"})
	if m := members(t, n1)["n4"]; m.GossipState != "left" {
		t.Fatalf("n4 after SIGTERM: %+v", m)
	}
	// The leave command does the same through the API.
	out, err := cli(t, c.nodes[4], "cluster", "leave")
	if err != nil {
		t.Fatalf("cluster leave: %v: %s", err, out)
	}
	waitFor(t, 30*time.Second, "n5 to stop", func() error {
		select {
		case <-c.nodes[4].done:
			return nil
		default:
			return fmt.Errorf("still running")
		}
	})
	expectSuffrage(t, n1, map[string]string{"n5": "none"})

	// Restarted on its data dir, the departed node rejoins, catching up on
	// what was written while it was away.
	if _, err := n1.client().AddDomain(ctx(t), "while-away.test"); err != nil {
		t.Fatal(err)
	}
	n4.start()
	n4.waitReady(60 * time.Second)
	expectSuffrage(t, n1, map[string]string{"n4": "voter"})
	waitFor(t, 20*time.Second, "n4 to see the domain added while it was away", func() error {
		ds, err := n4.client().Domains(ctx(t))
		if err != nil {
			return err
		}
		for _, d := range ds {
			if d.Name == "while-away.test" {
				return nil
			}
		}
		return fmt.Errorf("domains: %+v", ds)
	})
}

// TestDeadNodeGrace: a dead voter stays until the grace period passes, then
// the leader removes it, but never when that would risk quorum.
func TestDeadNodeGrace(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := newCluster(t, 3, "--dead-server-grace", "4s")
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	st, err := n1.client().Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	victim := n3
	if st.Leader == "n3" {
		victim = n2
	}
	survivor := n1
	if st.Leader == "n1" && victim == n2 {
		survivor = n3
	}
	victim.kill()
	waitFor(t, 20*time.Second, victim.name+" seen dead", func() error {
		if s := members(t, survivor)[victim.name].GossipState; s != "dead" {
			return fmt.Errorf("state %q", s)
		}
		return nil
	})
	// Still a voter right after it died.
	if s := members(t, survivor)[victim.name].Suffrage; s != "voter" {
		t.Fatalf("%s removed before the grace period: %q", victim.name, s)
	}
	expectSuffrage(t, survivor, map[string]string{victim.name: "none"})
	st, _ = survivor.client().Status(ctx(t))
	if len(st.Voters) != 2 {
		t.Fatalf("voters after removal: %v", st.Voters)
	}
	// Comes back: rejoins as a voter.
	victim.start()
	victim.waitReady(60 * time.Second)
	expectSuffrage(t, survivor, map[string]string{victim.name: "voter"})
}

// TestOperatorCommands drives the cluster with the real binary, as an
// operator would.
func TestOperatorCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := newCluster(t, 3)
	n2 := c.nodes[1]
	run := func(args ...string) string {
		t.Helper()
		out, err := cli(t, n2, args...)
		if err != nil {
			t.Fatalf("clustermail %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	fail := func(want string, args ...string) {
		t.Helper()
		out, err := cli(t, n2, args...)
		if err == nil || !strings.Contains(out, want) {
			t.Fatalf("clustermail %s: want failure containing %q, got %v\n%s", strings.Join(args, " "), want, err, out)
		}
	}
	run("domain", "add", "ops.test")
	fail("already exists", "domain", "add", "ops.test")
	if out := run("domain", "list"); !strings.Contains(out, "ops.test") {
		t.Fatalf("domain list: %s", out)
	}
	cmd := exec.Command(binary, "user", "add", "alice@ops.test", "--password-stdin", "--node", "n3", "--quota", "1G", "--api", "http://"+n2.api)
	cmd.Stdin = strings.NewReader("s3cret\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("user add: %v: %s", err, out)
	}
	if out := run("user", "show", "alice@ops.test"); !strings.Contains(out, "n3") || !strings.Contains(out, "1GiB") {
		t.Fatalf("user show: %s", out)
	}
	fail("not hosted", "user", "add", "bob@nothosted.test")
	run("alias", "add", "all@ops.test", "alice@ops.test")
	if out := run("alias", "list"); !strings.Contains(out, "all@ops.test") {
		t.Fatalf("alias list: %s", out)
	}
	fail("still has", "domain", "remove", "ops.test")

	// Leadership moves where the operator says.
	out := run("cluster", "transfer-leader", "n3")
	if !strings.Contains(out, "n3") {
		t.Fatalf("transfer-leader: %s", out)
	}
	waitFor(t, 20*time.Second, "n3 to lead", func() error {
		st, err := n2.client().Status(ctx(t))
		if err != nil || st.Leader != "n3" {
			return fmt.Errorf("leader %q %v", st.Leader, err)
		}
		return nil
	})
	// remove-peer takes a dead node out at once, through any node.
	c.nodes[0].kill()
	run("cluster", "remove-peer", "n1")
	expectSuffrage(t, n2, map[string]string{"n1": "none"})
	if out := run("cluster", "status"); !strings.Contains(out, "voters:") {
		t.Fatalf("cluster status: %s", out)
	}
	fail("not in the raft configuration", "cluster", "remove-peer", "nosuchnode")
}
