package node

import (
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"clustermail/cluster"
	"clustermail/queue"
)

// registerMetrics exposes Raft, gossip, queue and store state, read at
// scrape time.
func (n *Node) registerMetrics() {
	gauge := func(name, help string, f func() float64) {
		n.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	gauge("clustermail_raft_leader", "1 if this node is the Raft leader.", func() float64 {
		if n.cluster.Raft().State() == raft.Leader {
			return 1
		}
		return 0
	})
	gauge("clustermail_raft_term", "Current Raft term.", func() float64 { return float64(n.cluster.Status().Term) })
	gauge("clustermail_raft_commit_index", "Raft commit index.", func() float64 { return float64(n.cluster.Status().CommitIndex) })
	gauge("clustermail_raft_applied_index", "Index applied to the state store.", func() float64 { return float64(n.fsm.AppliedIndex()) })
	gauge("clustermail_raft_servers", "Servers in the Raft configuration.", func() float64 { return float64(n.cluster.Servers()) })
	n.reg.MustRegister(&memberCollector{c: n.cluster, desc: prometheus.NewDesc("clustermail_gossip_members",
		"Nodes known to gossip, by state.", []string{"state"}, nil)})
	n.reg.MustRegister(&queueCollector{q: n.queue,
		depth:  prometheus.NewDesc("clustermail_queue_depth", "Entries in the replicated queue, by state: active (never deferred) or deferred.", []string{"state"}, nil),
		oldest: prometheus.NewDesc("clustermail_queue_oldest_seconds", "Age of the oldest queue entry.", nil, nil)})
	n.reg.MustRegister(newStoreCollector(n.db, &n.storeEvents))
	gauge("clustermail_spool_bodies", "Message bodies held on this node.", func() float64 {
		c, _ := n.sp.Stats()
		return float64(c)
	})
}

type memberCollector struct {
	c    *cluster.Cluster
	desc *prometheus.Desc
}

func (m *memberCollector) Describe(ch chan<- *prometheus.Desc) { ch <- m.desc }

func (m *memberCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{cluster.StateAlive: 0, cluster.StateSuspect: 0, cluster.StateDead: 0, cluster.StateLeft: 0}
	for _, mb := range m.c.Members() {
		counts[mb.State]++
	}
	for s, c := range counts {
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, float64(c), s)
	}
}

// queueCollector reads the queue at scrape time.
type queueCollector struct {
	q             *queue.Queue
	depth, oldest *prometheus.Desc
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.depth; ch <- c.oldest }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	active, deferred := 0, 0
	var oldest time.Time
	_ = c.q.List(func(e queue.Entry) bool {
		state := &active
		for _, r := range e.Recipients {
			if !r.Final() && r.Attempts > 0 {
				state = &deferred
			}
		}
		*state++
		if oldest.IsZero() || e.Created.Before(oldest) {
			oldest = e.Created
		}
		return true
	})
	ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(active), "active")
	ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(deferred), "deferred")
	age := 0.0
	if !oldest.IsZero() {
		age = time.Since(oldest).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age)
}
