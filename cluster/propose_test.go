package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"clustermail/raftstore"
)

// TestAllHaveGatesMultiEntries: grouped entries are used only when every
// node known to gossip and every Raft server announces them; a node that
// left for good does not count, a dead one does.
func TestAllHaveGatesMultiEntries(t *testing.T) {
	table := func(ms ...Member) *memberTable {
		tb := newMemberTable()
		for i := range ms {
			tb.members[ms[i].Name] = &ms[i]
		}
		return tb
	}
	m := func(name, state string, features int) Member {
		return Member{Name: name, State: state, Meta: Meta{ID: name + "-id", Features: features}}
	}
	cases := []struct {
		name string
		tb   *memberTable
		ids  []string
		want bool
	}{
		{"all new", table(m("a", StateAlive, 1), m("b", StateAlive, 1)), []string{"a-id", "b-id"}, true},
		{"one old alive", table(m("a", StateAlive, 1), m("b", StateAlive, 0)), []string{"a-id", "b-id"}, false},
		{"one old dead", table(m("a", StateAlive, 1), m("b", StateDead, 0)), []string{"a-id", "b-id"}, false},
		{"old one left", table(m("a", StateAlive, 1), m("b", StateLeft, 0)), []string{"a-id"}, true},
		{"raft server not seen by gossip", table(m("a", StateAlive, 1)), []string{"a-id", "c-id"}, false},
		{"nothing known", table(), nil, false},
	}
	for _, c := range cases {
		if got := c.tb.allHave(featureMulti, c.ids); got != c.want {
			t.Errorf("%s: allHave = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestForwardedOutcomes: what the leader answers for a forwarded entry
// comes back to the proposer as one outcome per command, business errors
// with their codes, successes as nil (never a typed nil).
func TestForwardedOutcomes(t *testing.T) {
	conflict := raftstore.Errorf(raftstore.CodeConflict, "exists")
	cases := []struct {
		name string
		resp any
		want []string // "" = nil, else the error code
	}{
		{"plain ok", nil, []string{""}},
		{"plain business error", conflict, []string{raftstore.CodeConflict}},
		{"plain other error", errors.New("boom"), []string{"?"}},
		{"multi", raftstore.MultiResponse{nil, conflict, nil}, []string{"", raftstore.CodeConflict, ""}},
	}
	for _, c := range cases {
		b, err := json.Marshal(answer(7, c.resp))
		if err != nil {
			t.Fatal(err)
		}
		var a applyAnswer
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatal(err)
		}
		out := a.outcomes()
		if a.Index != 7 || len(out) != len(c.want) {
			t.Fatalf("%s: index %d, outcomes %v", c.name, a.Index, out)
		}
		for i, w := range c.want {
			switch {
			case w == "" && out[i] != nil:
				t.Errorf("%s: outcome %d = %v, want nil", c.name, i, out[i])
			case w == "?" && out[i] == nil:
				t.Errorf("%s: outcome %d lost its error", c.name, i)
			case w != "" && w != "?" && !raftstore.IsCode(out[i], w):
				t.Errorf("%s: outcome %d = %v, want code %s", c.name, i, out[i], w)
			}
		}
	}
}

// TestProposerMayWait: a proposal in no hurry waits for company; one in a
// hurry leaves at once and takes the waiting ones along; a complete company
// leaves at once; one in no hurry left alone still leaves after the linger.
func TestProposerMayWait(t *testing.T) {
	defer func(d time.Duration) { groupLinger = d }(groupLinger)
	sent := make(chan int, 8)
	p := &proposer{send: func(g []*proposal) {
		sent <- len(g)
		for _, pr := range g {
			pr.done <- outcome{}
		}
	}}
	pending := func(n int) {
		deadline := time.Now().Add(5 * time.Second)
		for {
			p.mu.Lock()
			k := len(p.pending)
			p.mu.Unlock()
			if k == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d proposals pending, want %d", k, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	ctx := context.Background()
	lazy := raftstore.NoReadBack(raftstore.MayWait(ctx, 4))
	hurry := raftstore.NoReadBack(ctx)
	expect := func(want int) {
		select {
		case n := <-sent:
			if n != want {
				t.Fatalf("group of %d sent, want %d", n, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no group sent, want one of %d", want)
		}
	}

	groupLinger = time.Hour
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.propose(lazy, []byte("report")) }()
	}
	pending(2)
	select {
	case n := <-sent:
		t.Fatalf("a group of %d left without company", n)
	default:
	}
	if err := p.propose(hurry, []byte("accept")); err != nil {
		t.Fatal(err)
	}
	expect(3)
	wg.Wait()

	// Nothing waiting: a proposal in a hurry leaves at once, alone.
	if err := p.propose(hurry, []byte("accept")); err != nil {
		t.Fatal(err)
	}
	expect(1)

	// Company complete: the group leaves without waiting out the linger.
	trio := raftstore.NoReadBack(raftstore.MayWait(ctx, 3))
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.propose(trio, []byte("report")) }()
	}
	expect(3)
	wg.Wait()

	groupLinger = 10 * time.Millisecond
	if err := p.propose(lazy, []byte("report")); err != nil {
		t.Fatal(err)
	}
	expect(1)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		p.mu.Lock()
		idle := p.gather == nil && p.inflight == 0
		p.mu.Unlock()
		if idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("proposer not idle after its last group")
		}
	}
}
