package cluster

import (
	"encoding/json"
	"errors"
	"testing"

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
