// Package node wires one clustermail node together: configuration, the
// start and stop order of its parts, the admin HTTP API, health and metrics.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/google/uuid"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"clustermail/certs"
	"clustermail/cluster"
	"clustermail/directory"
	"clustermail/mailstore"
	"clustermail/peer"
	"clustermail/queue"
	"clustermail/raftstore"
	"clustermail/routing"
	"clustermail/smtpd"
	"clustermail/spool"
	"clustermail/throttle"
	"clustermail/wal"
)

// Node is one running clustermail node.
type Node struct {
	cfg  Config
	log  *slog.Logger
	reg  *prometheus.Registry
	id   string
	logs *raftstore.LogStore
	fsm  *raftstore.FSM
	sp   *spool.Spool
	mail *mailstore.Store
	db   *pebble.DB // shared by the four stores above

	storeEvents storeEvents // Pebble's stalls and flushes, for metrics
	wal         wal.Tracker // which unsynced writes to db a synced one covered

	peerLn  *peer.Listener
	rpcSrv  *http.Server
	apiSrv  *http.Server
	apiLn   net.Listener
	cluster *cluster.Cluster
	dir     *directory.Directory
	queue   *queue.Queue
	router  *routing.Router
	smtp    *smtpd.Server
	subs    []*smtpd.Server // submission listeners
	access  *mailAccess
	// Against abuse, shared by the mail listeners so a client gets one
	// allowance whichever port it uses: failed logins lock an account or
	// address out of SMTP AUTH, IMAP and POP3 together; the sending rate
	// covers both submission ports.
	logins   *throttle.Limiter
	sendRate *throttle.Rate
	readers  []interface {
		Shutdown(context.Context) error
	} // IMAP and POP3 listeners
	certs *certs.Reloader
	hup   chan os.Signal
	rpc   *http.Client

	clusterCerts *certs.Reloader // this node's certificate on the cluster port; nil: plaintext
	clusterHup   chan os.Signal
	token        string // the admin API's bearer token; "": open

	cancel       context.CancelFunc
	wg           sync.WaitGroup
	stopOnce     sync.Once
	storesClosed sync.Once
	stopped      chan struct{}
	leaveReq     chan struct{}
	restoring    sync.Mutex // one snapshot restore at a time
}

// Start opens the node's stores and starts every part. The node runs until
// Stop or Leave.
func Start(cfg Config, log *slog.Logger) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Not the named result: every failure returns nil, and the deferred
	// clean-up below still needs the node.
	n := &Node{cfg: cfg, log: log, reg: prometheus.NewRegistry(),
		logins: throttle.New(), sendRate: throttle.NewRate(cfg.MaxMessagesPerHour),
		stopped: make(chan struct{}), leaveReq: make(chan struct{}, 1), hup: make(chan os.Signal, 1), clusterHup: make(chan os.Signal, 1)}
	defer func() {
		if err != nil {
			n.closeStores()
		}
	}()
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if n.id, err = nodeID(cfg.DataDir); err != nil {
		return nil, err
	}
	if err := n.openStores(); err != nil {
		return nil, err
	}
	// Handlers are registered before Raft starts: it may apply entries at once.
	n.queue = queue.New(n.fsm, nil)
	n.queue.SetLocal(cfg.Name)
	directory.Register(n.fsm)
	n.queue.Register(n.fsm)
	registerBackupCommands(n.fsm, log)

	if cfg.APITokenFile != "" {
		if n.token, err = loadToken(cfg.APITokenFile); err != nil {
			return nil, err
		}
	} else if !loopback(cfg.APIAddr) {
		log.Warn("the admin API has no token: anyone who reaches --api-addr can administer the cluster; set --api-token-file")
	}
	network, err := n.peerNetwork()
	if err != nil {
		return nil, err
	}
	if n.peerLn, err = network.Listen(cfg.RaftAddr, log); err != nil {
		return nil, err
	}
	// Every node-to-node call goes through the listener's network.
	n.rpc = n.peerLn.HTTPClient()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.DataDir, "raft"), 2, nil)
	if err != nil {
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	logCache, err := raft.NewLogCache(512, n.logs)
	if err != nil {
		return nil, err
	}
	n.cluster, err = cluster.New(cluster.Config{
		Name: cfg.Name, ID: n.id, GossipAddr: cfg.GossipAddr, Join: cfg.Join, Expect: cfg.BootstrapExpect,
		DeadGrace: cfg.DeadServerGrace, DataDir: cfg.DataDir, Logger: log,
		SnapshotThreshold: cfg.RaftSnapshotThreshold, TrailingLogs: cfg.RaftTrailingLogs,
		SnapshotInterval: cfg.RaftSnapshotInterval, GossipKey: n.gossipKey(),
		Meta: cluster.Meta{ID: n.id, RaftAddr: cfg.RaftAddr, APIAddr: cfg.APIAddr, SMTPAddr: cfg.SMTPAddr,
			Expect: cfg.BootstrapExpect, Version: Version},
	}, cluster.Stores{Log: logCache, Stable: n.logs, Snapshots: snaps, FSM: n.fsm, Applied: n.fsm.AppliedIndex, Advanced: n.fsm.Advanced}, n.peerLn)
	if err != nil {
		n.peerLn.Close()
		return nil, err
	}
	n.dir = directory.New(n.fsm, n.cluster)
	n.queue.SetApplier(n.cluster)
	sender, err := newSender(cfg, log)
	if err != nil {
		n.abort()
		return nil, err
	}
	schedule, err := routing.ParseSchedule(cfg.RetrySchedule)
	if err != nil {
		n.abort()
		return nil, err
	}
	n.router = routing.New(routing.Config{Workers: cfg.DeliveryWorkers, Hostname: cfg.Hostname, RetrySchedule: schedule,
		DelayWarning: cfg.DelayWarning, QueueLifetime: cfg.QueueLifetime, ReassignAfter: cfg.ReassignAfter,
		DataDir: cfg.DataDir, MinFreeSpace: cfg.MinFreeSpace},
		n.cluster, n.dir, n.queue, n.sp, n.mail, sender, n.fsm.AppliedIndex, n.rpc, log, n.reg)
	n.cluster.OnLeader(n.router.Reassigner)
	n.registerMetrics()
	n.cluster.Start()

	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	if cfg.TLSCert != "" {
		if n.certs, err = certs.NewReloader(cfg.TLSCert, cfg.TLSKey, log); err != nil {
			n.abort()
			return nil, err
		}
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.certs.Watch(ctx, 10*time.Second, n.hup) }()
	}
	if n.clusterCerts != nil {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.clusterCerts.Watch(ctx, 10*time.Second, n.clusterHup) }()
	}
	if cfg.InsecureAuth {
		log.Warn("--insecure-auth: passwords may be sent in clear text; use this for loopback tests only")
	}
	n.rpcSrv = peer.NewHTTPServer(n.internalHandler())
	n.goServe("internal rpc", func() error { return n.rpcSrv.Serve(n.peerLn.RPC()) })
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.router.Run(ctx) }()

	if err := n.startSMTP(); err != nil {
		n.abort()
		return nil, err
	}
	if err := n.startAccess(); err != nil {
		n.abort()
		return nil, err
	}
	if n.apiLn, err = net.Listen("tcp", cfg.APIAddr); err != nil {
		n.abort()
		return nil, fmt.Errorf("admin API listen %s: %w", cfg.APIAddr, err)
	}
	n.apiSrv = &http.Server{Handler: n.apiHandler(), ReadHeaderTimeout: 10 * time.Second}
	n.goServe("admin api", func() error { return n.apiSrv.Serve(n.apiLn) })
	log.Info("node started", "name", cfg.Name, "id", n.id, "smtp", n.smtp.Addr().String(), "submission", cfg.SubmissionAddr,
		"submissions", cfg.SubmissionsAddr, "api", n.apiLn.Addr().String(),
		"cluster", cfg.RaftAddr, "gossip", cfg.GossipAddr, "version", Version)
	return n, nil
}

func (n *Node) goServe(what string, serve func() error) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			n.log.Error(what+" stopped", "err", err)
		}
	}()
}

// openStores opens the node's one Pebble database and the four stores kept
// in it, each in its own key range: the Raft log, the replicated state, the
// queued bodies and the mailboxes. One database means one write-ahead log,
// so the synced commits of every path (a body stored, a log entry appended,
// a message delivered) share fsyncs instead of queueing behind each other.
func (n *Node) openStores() error {
	// Before the shared database each store had a directory of its own.
	// Opening such a data dir as if new would drop its mailboxes, queued
	// bodies and Raft vote without a word: refuse instead.
	for _, old := range []string{"state", "mail", "spool", filepath.Join("raft", "log")} {
		if _, err := os.Stat(filepath.Join(n.cfg.DataDir, old)); err == nil {
			return fmt.Errorf("%s holds the older one-database-per-store layout (%s): this version cannot read it: keep running the version that wrote it (README, Rolling restart and upgrade)", n.cfg.DataDir, old)
		}
	}
	var err error
	// Commits over half the memtable bypass it and force a flush: 32 MiB
	// keeps every ordinary message body on the fast path. Built without
	// cgo, memtables live on the Go heap, which the collector lets grow to
	// twice what is live: a larger memtable costs resident memory.
	const memTable = 32 << 20
	// Pebble reserves the memory of every memtable not yet flushed (the
	// mutable one and one being flushed) out of the block cache. A cache
	// of 64 MiB was therefore empty under load, and every point lookup
	// (directory, mailbox counters, spool metadata) read and decompressed
	// index and data blocks from the files: 15 to 20 % of a node's CPU with
	// 32 KiB messages. The reservation is on top of what blocks may use.
	cache := pebble.NewCache(blockCache + 2*memTable)
	defer cache.Unref()
	opts := &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Cache:              cache,
		MemTableSize:       memTable,
		Logger:             raftstore.QuietLogger{},
		EventListener:      n.storeEvents.listener(),
	}
	// Most point lookups miss (request ids already applied, messages not
	// yet delivered, addresses that are not aliases): a bloom filter per
	// table answers them without reading the table's blocks. Lower levels
	// inherit it.
	opts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	// Bodies (spool copies, mailbox messages) go to blob files at flush and
	// stay there: compactions move only keys and small values, instead of
	// rewriting every body at each level. With 32 KiB messages (8 000 on
	// one node): a tenth less written, a sixth of the bytes compactions
	// read.
	opts.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		return pebble.ValueSeparationPolicy{
			Enabled:               true,
			MinimumSize:           1024,
			MaxBlobReferenceDepth: 10,
			RewriteMinimumAge:     5 * time.Minute,
			TargetGarbageRatio:    0.2,
		}
	}
	n.db, err = pebble.Open(filepath.Join(n.cfg.DataDir, "db"), opts)
	if err != nil {
		return fmt.Errorf("open the node's database: %w", err)
	}
	if n.logs, err = raftstore.OpenLogStore("", raftstore.LogStoreOptions{DB: n.db, WAL: &n.wal}); err != nil {
		return err
	}
	if n.fsm, err = raftstore.OpenFSM("", raftstore.FSMOptions{DB: n.db, Logger: n.log}); err != nil {
		return err
	}
	if n.sp, err = spool.Open("", spool.Options{DB: n.db, WAL: &n.wal}); err != nil {
		return err
	}
	if n.mail, err = mailstore.Open("", mailstore.Options{DB: n.db}); err != nil {
		return err
	}
	return nil
}

// blockCache is what Pebble's block cache holds of index, filter and data
// blocks: the hot set is small (the directory, mailbox counters, the
// blocks of recent files), bodies are read once.
const blockCache = 32 << 20

func (n *Node) closeStores() {
	n.storesClosed.Do(func() {
		for _, c := range []interface{ Close() error }{n.mail, n.sp, n.fsm, n.logs} {
			if c != nil && !isNil(c) {
				if err := c.Close(); err != nil {
					n.log.Warn("close store", "err", err)
				}
			}
		}
		if n.db != nil {
			if err := n.db.Close(); err != nil {
				n.log.Warn("close the node's database", "err", err)
			}
		}
	})
}

func isNil(c interface{ Close() error }) bool {
	switch v := c.(type) {
	case *mailstore.Store:
		return v == nil
	case *spool.Spool:
		return v == nil
	case *raftstore.FSM:
		return v == nil
	case *raftstore.LogStore:
		return v == nil
	}
	return false
}

// nodeID returns the Raft server id kept in the data dir, creating it on
// first start: an id, unlike an address, survives a move.
func nodeID(dir string) (string, error) {
	p := filepath.Join(dir, "node-id")
	b, err := os.ReadFile(p)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if _, err := uuid.Parse(id); err != nil {
			return "", fmt.Errorf("%s is corrupt: %q", p, id)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	id := uuid.NewString()
	if err := os.WriteFile(p, []byte(id+"\n"), 0o640); err != nil {
		return "", fmt.Errorf("write node id: %w", err)
	}
	return id, nil
}
