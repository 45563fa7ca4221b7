package cluster

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Gossip states of a member as this node knows it.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
	StateUnknown = "unknown"
)

// Member is a node known to gossip.
type Member struct {
	Name   string
	Addr   string // gossip address
	Meta   Meta
	State  string
	Since  time.Time // when it entered State
	Expect int
}

// memberTable remembers every node gossip has told us of, including dead
// and departed ones, which memberlist forgets.
type memberTable struct {
	mu      sync.Mutex
	members map[string]*Member
}

func newMemberTable() *memberTable { return &memberTable{members: map[string]*Member{}} }

func (t *memberTable) set(n *memberlist.Node, state string) {
	meta, ok := decodeMeta(n.Meta)
	if !ok {
		return // not a clustermail node, or a corrupt announcement
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m, seen := t.members[n.Name]
	if !seen {
		m = &Member{Name: n.Name}
		t.members[n.Name] = m
	}
	if !seen || m.State != state {
		m.State, m.Since = state, time.Now()
	}
	m.Addr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	m.Meta = meta
	m.Expect = meta.Expect
}

// allHave reports whether every node the table knows of, except those
// that left for good, and every Raft server in ids, announces at least the
// given feature level. A dead node counts: it applies the log when it
// comes back.
func (t *memberTable) allHave(level int, ids []string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.members) == 0 {
		return false // gossip has not started: nothing is known yet
	}
	seen := make(map[string]bool, len(t.members))
	for _, m := range t.members {
		if m.State != StateLeft && m.Meta.Features < level {
			return false
		}
		seen[m.Meta.ID] = true
	}
	for _, id := range ids {
		if !seen[id] {
			return false
		}
	}
	return true
}

func (t *memberTable) list() []Member {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Member, 0, len(t.members))
	for _, m := range t.members {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// delegate hands memberlist our metadata and turns its events into table
// updates plus a non-blocking wake-up of the reconciler: events are lossy
// by design, so the leader also reconciles periodically.
type delegate struct{ c *Cluster }

func (d delegate) NodeMeta(limit int) []byte {
	d.c.mu.Lock()
	m := d.c.cfg.Meta
	d.c.mu.Unlock()
	b, err := m.encode()
	if err != nil || len(b) > limit {
		return nil
	}
	return b
}
func (delegate) NotifyMsg([]byte)                           {}
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

func (d delegate) NotifyJoin(n *memberlist.Node)   { d.c.table.set(n, StateAlive); d.c.wake() }
func (d delegate) NotifyUpdate(n *memberlist.Node) { d.c.table.set(n, StateAlive); d.c.wake() }
func (d delegate) NotifyLeave(n *memberlist.Node) {
	// n.State is not filled in by memberlist here; the departing node's
	// own Leaving flag tells a leave from a failure.
	st := StateDead
	if m, ok := decodeMeta(n.Meta); ok && m.Leaving {
		st = StateLeft
	}
	d.c.table.set(n, st)
	d.c.wake()
}

func (c *Cluster) wake() {
	select {
	case c.events <- struct{}{}:
	default:
	}
}

func (c *Cluster) startGossip() error {
	host, port, err := splitHostPort(c.cfg.GossipAddr)
	if err != nil {
		return fmt.Errorf("gossip address %q: %w", c.cfg.GossipAddr, err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.cfg.Name
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = host, port
	mc.Delegate = delegate{c}
	mc.Events = delegate{c}
	mc.LogOutput = logWriter{c.log, "gossip"}
	kr, err := openKeyring(c.cfg.DataDir, c.cfg.GossipKey, c.log)
	if err != nil {
		return err
	}
	if kr != nil {
		// Packets not sealed with an installed key are dropped, and this
		// node never sends one in clear.
		c.keyring, mc.Keyring = kr, kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	} else {
		c.log.Warn("gossip is not encrypted: give every node the same --gossip-key (clustermail keygen makes one)")
	}
	// A node restarted with a new IP (a container, a pod) keeps its name;
	// let it reclaim the name soon instead of being refused as a conflict.
	mc.DeadNodeReclaimTime = 10 * time.Second
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("start gossip on %s: %w", c.cfg.GossipAddr, err)
	}
	c.ml = ml
	return nil
}

// splitHostPort resolves the host to an IP, since memberlist binds and
// advertises IPs only.
func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if h == "" {
		h = "0.0.0.0"
	}
	if net.ParseIP(h) == nil {
		ips, err := net.LookupIP(h)
		if err != nil || len(ips) == 0 {
			return "", 0, fmt.Errorf("resolve %s: %v", h, err)
		}
		h = ips[0].String()
		for _, ip := range ips {
			if ip.To4() != nil {
				h = ip.String()
				break
			}
		}
	}
	return h, port, nil
}

// joinLoop joins the given gossip addresses, retrying until one answers,
// then keeps retrying whenever this node is alone again.
func (c *Cluster) joinLoop() {
	defer c.wg.Done()
	if len(c.cfg.Join) == 0 {
		return
	}
	backoff := 500 * time.Millisecond
	for {
		if c.ml.NumMembers() < 2 {
			n, err := c.ml.Join(c.cfg.Join)
			if err != nil && n == 0 {
				c.log.Debug("join: no node answered yet", "join", c.cfg.Join, "err", err)
			} else if n > 0 {
				c.log.Info("joined the cluster", "contacted", n, "members", c.ml.NumMembers())
				backoff = 500 * time.Millisecond
			}
		}
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 10*time.Second {
			backoff *= 2
		}
	}
}
