// Package routing moves a message from acceptance to its mailboxes: it
// resolves recipients against the directory, stores the body on its holder
// nodes, commits the queue entry, and runs this node's delivery worker.
package routing

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clustermail/cluster"
	"clustermail/directory"
	"clustermail/mailstore"
	"clustermail/outbound"
	"clustermail/queue"
)

// Membership is what routing needs to know about the cluster.
type Membership interface {
	Name() string
	LiveNodes() []cluster.Member
	Node(name string) (cluster.Member, bool)
	Servers() int
	Ready(applied uint64) string
}

// Spool is this node's body store.
type Spool interface {
	Put(id string, body []byte) error
	// PutUnsynced stores without waiting for the disk; Sync(ticket) waits,
	// fsyncing only if no later synced write (a Raft append) covered it.
	PutUnsynced(id string, body []byte) (ticket uint64, err error)
	Sync(ticket uint64) error
	Get(id string) ([]byte, error)
	Has(id string) bool
	Delete(id string) error
	List(fn func(id string, stored time.Time, size int64) bool) error
}

// Mailboxes is this node's mailbox store.
type Mailboxes interface {
	// DeliverMany stores messages for one account idempotently by key in one
	// transaction, refusing each that would exceed its quota with an error
	// wrapping mailstore.ErrOverQuota.
	DeliverMany(account string, ds []mailstore.Delivery) ([]mailstore.DeliveryResult, error)
}

// Sender delivers a message to the recipients of one remote domain.
type Sender interface {
	Deliver(ctx context.Context, domain, from string, rcpts []string, body []byte) []outbound.Result
}

// Config tunes routing.
type Config struct {
	Workers       int    // concurrent deliveries on this node
	Hostname      string // ours, in DSNs
	RetrySchedule []time.Duration
	DelayWarning  time.Duration // tell the sender once after this long
	QueueLifetime time.Duration // then give up and bounce
	ReassignAfter time.Duration // a dead node's remote recipients move to a live holder after this
	DataDir       string        // checked for free space
	MinFreeSpace  int64         // refuse mail below this many free bytes
}

// Router is one node's routing.
type Router struct {
	cfg     Config
	members Membership
	dir     *directory.Directory
	queue   *queue.Queue
	spool   Spool
	mail    Mailboxes
	sender  Sender
	applied func() uint64
	rpc     *http.Client
	log     *slog.Logger
	m       metrics
	room    room
	batch   *batcher
}

// New wires a router.
func New(cfg Config, members Membership, dir *directory.Directory, q *queue.Queue, sp Spool, mail Mailboxes, sender Sender,
	applied func() uint64, rpc *http.Client, log *slog.Logger, reg prometheus.Registerer) *Router {
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.QueueLifetime <= 0 {
		cfg.QueueLifetime = 5 * 24 * time.Hour
	}
	if cfg.DelayWarning <= 0 {
		cfg.DelayWarning = 4 * time.Hour
	}
	if cfg.ReassignAfter <= 0 {
		cfg.ReassignAfter = time.Minute
	}
	return &Router{cfg: cfg, members: members, dir: dir, queue: q, spool: sp, mail: mail, sender: sender, applied: applied,
		rpc: rpc, log: log, m: newMetrics(reg), room: room{dir: cfg.DataDir, minFree: cfg.MinFreeSpace},
		batch: newBatcher(mail.DeliverMany, cfg.Workers)}
}

type metrics struct {
	stage      *prometheus.HistogramVec
	attempts   *prometheus.CounterVec
	accepted   prometheus.Counter
	acceptErrs *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	loops      *prometheus.CounterVec
	bodyPuts   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "clustermail_accept_stage_seconds",
			Help:    "Time spent accepting a message after its data was read, by stage: body (stored on the holders), queue (entry committed through Raft).",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 5}}, []string{"stage"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clustermail_delivery_attempts_total",
			Help: "Delivery attempts per recipient, by kind (local, remote) and reply class."}, []string{"kind", "class"}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "clustermail_messages_accepted_total",
			Help: "Messages accepted and queued (250 after DATA)."}),
		acceptErrs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clustermail_accept_failures_total",
			Help: "Messages refused with a temporary error after DATA, by stage."}, []string{"stage"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clustermail_deliveries_total",
			Help: "Recipient delivery attempts on this node, by result."}, []string{"result"}),
		loops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clustermail_loop_iterations_total",
			Help: "Iterations of the node's long-running loops."}, []string{"loop"}),
		bodyPuts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clustermail_body_replicas_total",
			Help: "Body copies stored on holder nodes, by result."}, []string{"result"}),
	}
	reg.MustRegister(m.stage, m.attempts, m.accepted, m.acceptErrs, m.deliveries, m.loops, m.bodyPuts)
	return m
}
