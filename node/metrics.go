package node

import (
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"clustermail/cluster"
	"clustermail/queue"
)

// registerMetrics exposes Raft, gossip and queue state, read at scrape time.
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
	gauge("clustermail_queue_depth", "Entries in the replicated queue.", func() float64 {
		count := 0
		_ = n.queue.List(func(queue.Entry) bool { count++; return true })
		return float64(count)
	})
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
