package e2e

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"clustermail/api"
)

// TestThreeNodeCluster walks the core promise end to end: three processes
// form a cluster by themselves, accept mail on every node for mailboxes on
// every node, keep accepting while a mailbox owner is dead, deliver all of
// it exactly once after it returns, and elect a new leader when the leader dies.
func TestThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := newCluster(t, 3)
	n1 := c.nodes[0]

	// One leader, three voters, no further command.
	waitVoters(t, n1.client(), 3, 20*time.Second)

	// Directory writes work through any node (followers forward).
	if _, err := c.nodes[1].client().AddDomain(ctx(t), "example.test"); err != nil {
		t.Fatal(err)
	}
	users := map[string]string{} // address -> owner
	for i, nd := range c.nodes {
		a := fmt.Sprintf("user%d@example.test", i+1)
		u, err := c.nodes[(i+1)%3].client().AddUser(ctx(t), api.UserAddRequest{Address: a, Password: "pw", Node: nd.name})
		if err != nil {
			t.Fatal(err)
		}
		if u.Node != nd.name {
			t.Fatalf("%s placed on %s, asked for %s", a, u.Node, nd.name)
		}
		users[a] = nd.name
	}
	if _, err := n1.client().AddAlias(ctx(t), "team@example.test", []string{"user1@example.test", "user3@example.test"}); err != nil {
		t.Fatal(err)
	}

	want := map[string]map[string]int{} // address -> subject -> count
	expect := func(subject string, to ...string) {
		for _, a := range to {
			if want[a] == nil {
				want[a] = map[string]int{}
			}
			want[a][subject]++
		}
	}
	// Every node accepts mail for every mailbox.
	for i, nd := range c.nodes {
		for a := range users {
			subj := fmt.Sprintf("via-%s-to-%s", nd.name, strings.Split(a, "@")[0])
			code, text, err := send(nd.smtp, "sender@client.test", []string{a}, message(subj))
			if err != nil || code != 250 {
				t.Fatalf("send %s via %s: %d %s %v", a, nd.name, code, text, err)
			}
			expect(subj, a)
		}
		subj := fmt.Sprintf("alias-via-%d", i)
		if code, text, err := send(nd.smtp, "sender@client.test", []string{"team@example.test"}, message(subj)); err != nil || code != 250 {
			t.Fatalf("send to alias: %d %s %v", code, text, err)
		}
		expect(subj, "user1@example.test", "user3@example.test")
	}
	// One message, two recipients on two nodes: lands once in each.
	if code, _, err := send(n1.smtp, "sender@client.test", []string{"user2@example.test", "user3@example.test"}, message("two-nodes")); err != nil || code != 250 {
		t.Fatalf("two-recipient send: %d %v", code, err)
	}
	expect("two-nodes", "user2@example.test", "user3@example.test")
	checkMailboxes(t, c.nodes[2], want, 30*time.Second)

	// Kill the owner of user2's mailbox; every node left keeps answering 250.
	owner := c.nodes[1]
	owner.kill()
	var acked sync.Map
	for i := 0; i < 20; i++ {
		via := c.nodes[[]int{0, 2}[i%2]]
		subj := fmt.Sprintf("while-down-%d", i)
		code, text, err := send(via.smtp, "sender@client.test", []string{"user2@example.test"}, message(subj))
		if err != nil || code != 250 {
			t.Fatalf("send while owner down via %s: %d %s %v", via.name, code, text, err)
		}
		acked.Store(subj, true)
		expect(subj, "user2@example.test")
	}
	// Its mailbox is unavailable, clearly, rather than empty.
	if _, err := n1.client().Messages(ctx(t), "user2@example.test"); err == nil || !strings.Contains(err.Error(), "down") {
		t.Fatalf("listing a dead owner's mailbox: %v", err)
	}
	owner.start()
	owner.waitReady(60 * time.Second)
	checkMailboxes(t, n1, want, 60*time.Second)

	// Kill the leader: a new one is elected and directory writes work again.
	st, err := n1.client().Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var leader *node
	var rest []*node
	for _, nd := range c.nodes {
		if nd.name == st.Leader {
			leader = nd
		} else {
			rest = append(rest, nd)
		}
	}
	if leader == nil {
		t.Fatalf("leader %q is not one of ours", st.Leader)
	}
	leader.signal(syscall.SIGKILL)
	waitFor(t, 30*time.Second, "a new leader", func() error {
		s, err := rest[0].client().Status(ctx(t))
		if err != nil {
			return err
		}
		if s.Leader == "" || s.Leader == leader.name {
			return fmt.Errorf("leader is %q", s.Leader)
		}
		return nil
	})
	waitFor(t, 30*time.Second, "a directory write after failover", func() error {
		_, err := rest[1].client().AddDomain(ctx(t), "after-failover.test")
		if err != nil && strings.Contains(err.Error(), "already exists") {
			return nil
		}
		return err
	})
	// Mail still flows with the old leader dead.
	for _, nd := range rest {
		subj := "after-leader-death-" + nd.name
		if code, text, err := send(nd.smtp, "sender@client.test", []string{"user1@example.test", "user3@example.test"}, message(subj)); err != nil || code != 250 {
			t.Fatalf("send after leader death via %s: %d %s %v", nd.name, code, text, err)
		}
		expect(subj, "user1@example.test", "user3@example.test")
	}
	leader.start()
	leader.waitReady(60 * time.Second)
	checkMailboxes(t, n1, want, 60*time.Second)
}

// checkMailboxes waits until every mailbox holds exactly the expected
// messages, then fails on anything missing or duplicated.
func checkMailboxes(t *testing.T, via *node, want map[string]map[string]int, d time.Duration) {
	t.Helper()
	waitFor(t, d, "every message delivered exactly once", func() error {
		for a, subs := range want {
			got, err := subjects(t, via.client(), a)
			if err != nil {
				return fmt.Errorf("%s: %w", a, err)
			}
			for s, n := range subs {
				if got[s] != n {
					return fmt.Errorf("%s: %q arrived %d times, want %d", a, s, got[s], n)
				}
			}
			for s, n := range got {
				if subs[s] == 0 {
					return fmt.Errorf("%s: unexpected message %q (%d)", a, s, n)
				}
			}
		}
		return nil
	})
}
