// Package cluster is membership and consensus: memberlist gossip tells which
// nodes exist and are alive; the Raft leader reconciles them into the Raft
// configuration (voters up to five, non-voters beyond), and any node can
// commit a command, forwarding it to the leader.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"clustermail/peer"
)

// maxVoters is the largest number of voters the leader keeps; further
// nodes join as non-voters, which replicate but do not vote.
const maxVoters = 5

// Config configures a node's membership and consensus.
type Config struct {
	Name       string
	ID         string // Raft server id: a UUID kept in the data dir
	GossipAddr string // host:port, bound and advertised
	Join       []string
	Expect     int           // --bootstrap-expect; 0: join an existing cluster
	DeadGrace  time.Duration // how long a dead voter stays before the leader removes it
	// SnapshotThreshold and TrailingLogs tune Raft's log compaction; zero
	// keeps Raft's defaults (8192 and 10240).
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotInterval  time.Duration
	Meta              Meta   // what this node tells the others about itself
	DataDir           string // Raft snapshots go under it
	Logger            *slog.Logger

	// GossipKey seeds the gossip keyring kept in DataDir on first start;
	// with neither, gossip travels in clear.
	GossipKey []byte
}

// Stores are the durable parts Raft runs on.
type Stores struct {
	Log       raft.LogStore
	Stable    raft.StableStore
	Snapshots raft.SnapshotStore
	FSM       raft.FSM
	// Applied is the index the FSM's durable state reflects, used to skip
	// restoring a snapshot the state already contains.
	Applied func() uint64
	// Advanced returns a channel closed when the applied index next moves
	// (raftstore.FSM.Advanced): a proposer that reads its write back waits
	// on it.
	Advanced func() <-chan struct{}
}

// Cluster is one node's view of the cluster.
type Cluster struct {
	cfg     Config
	log     *slog.Logger
	raft    *raft.Raft
	trans   *raft.NetworkTransport
	ml      *memberlist.Memberlist
	keyring *memberlist.Keyring // nil: gossip in clear
	keyMu   sync.Mutex          // a keyring change and its saving go together
	secure  bool                // the cluster port is mutual TLS
	// refused remembers, for the leader's reconcile loop only, when a
	// member's cluster port last failed mutual TLS: it is probed again a
	// minute later, not on every pass (each probe can take seconds).
	refused map[raft.ServerID]time.Time
	rpc     *http.Client
	table   *memberTable
	events  chan struct{}
	notify  chan bool
	applied func() uint64
	// advanced: see Stores.Advanced
	advanced func() <-chan struct{}
	group    proposer
	stores   Stores

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex // guards cfg.Meta and duties
	duties []func(context.Context)
}

// New starts Raft on the cluster port's Raft listener and gossip on the
// gossip address. Forming the cluster (join, bootstrap) starts with Start.
func New(cfg Config, st Stores, ln *peer.Listener) (*Cluster, error) {
	lg := cfg.Logger
	c := &Cluster{
		cfg:      cfg,
		log:      lg,
		rpc:      ln.HTTPClient(),
		secure:   ln.Network().Secure(),
		table:    newMemberTable(),
		events:   make(chan struct{}, 1),
		notify:   make(chan bool, 16),
		applied:  st.Applied,
		advanced: st.Advanced,
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.group.c = c
	c.group.send = c.commitGroup
	c.cfg.Meta.Features = features

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.NotifyCh = c.notify
	rc.BatchApplyCh = true
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Debug, Output: logWriter{lg, "raft"},
		DisableTime: true})
	// A state store that already holds the latest snapshot's entries must
	// not be overwritten by restoring it again at start.
	if snaps, err := st.Snapshots.List(); err == nil && len(snaps) > 0 && st.Applied() >= snaps[0].Index {
		rc.NoSnapshotRestoreOnStart = true
	}
	c.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  ln.RaftLayer(),
		MaxPool: 5,
		Timeout: 10 * time.Second,
		Logger:  rc.Logger,
	})
	r, err := raft.NewRaft(rc, st.FSM, st.Log, st.Stable, st.Snapshots, c.trans)
	if err != nil {
		c.trans.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	c.raft = r

	if err := c.startGossip(); err != nil {
		r.Shutdown().Error()
		c.trans.Close()
		return nil, err
	}
	c.stores = st
	return c, nil
}

// Start forms or joins the cluster and starts the leader's duties when
// this node leads. Register duties (OnLeader) before.
func (c *Cluster) Start() {
	c.wg.Add(3)
	go c.joinLoop()
	go c.bootstrapLoop(c.stores)
	go c.monitorLeadership()
}

// Raft exposes the Raft node to the parts that report on it.
func (c *Cluster) Raft() *raft.Raft { return c.raft }

// Name is this node's name.
func (c *Cluster) Name() string { return c.cfg.Name }

// Shutdown stops gossip and Raft without leaving: the others see this node
// fail, and it stays a voter (a crash-like stop).
func (c *Cluster) Shutdown() error {
	c.cancel()
	c.wg.Wait()
	var errs []error
	if c.ml != nil {
		errs = append(errs, c.ml.Shutdown())
	}
	errs = append(errs, c.raft.Shutdown().Error())
	errs = append(errs, c.trans.Close())
	return errors.Join(errs...)
}
