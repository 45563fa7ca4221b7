package cluster

import "testing"

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
