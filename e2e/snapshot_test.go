package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"clustermail/api"
)

// TestCatchUpFromSnapshot: with a short log, a node that joins later (or
// was away while the log was compacted) catches up by installing a snapshot
// of the state, and then serves it.
func TestCatchUpFromSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := newCluster(t, 3, "--raft-snapshot-threshold", "20", "--raft-trailing-logs", "5", "--raft-snapshot-interval", "500ms")
	n1 := c.nodes[0]
	away := c.nodes[2]
	away.kill()
	if _, err := n1.client().AddDomain(ctx(t), "snap.test"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 120; i++ {
		if _, err := n1.client().AddUser(ctx(t), api.UserAddRequest{Address: fmt.Sprintf("u%03d@snap.test", i), Password: "pw", Node: "n1"}); err != nil {
			t.Fatal(err)
		}
	}
	// Raft snapshots on a timer; wait until the leader has compacted its log.
	waitFor(t, 30*time.Second, "a snapshot on the leader", func() error {
		if !logContains(c, "raft: snapshot complete up to") {
			return fmt.Errorf("no snapshot yet")
		}
		return nil
	})
	n4 := c.addNode()
	away.start()
	away.waitReady(90 * time.Second)
	for _, nd := range []*node{n4, away} {
		waitFor(t, 60*time.Second, nd.name+" to hold all accounts", func() error {
			us, err := nd.client().Users(ctx(t), "snap.test")
			if err != nil {
				return err
			}
			if len(us) != 120 {
				return fmt.Errorf("%d accounts", len(us))
			}
			return nil
		})
	}
	if !logContains(&testCluster{nodes: []*node{n4}}, "raft: Installed remote snapshot") {
		t.Error("n4 caught up without installing a snapshot: the test did not test what it means to")
	}
}

func logContains(c *testCluster, s string) bool {
	for _, nd := range c.nodes {
		if b, err := os.ReadFile(nd.dir + ".log"); err == nil && strings.Contains(string(b), s) {
			return true
		}
	}
	return false
}
