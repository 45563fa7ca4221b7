package routing

import (
	"context"
	"time"

	"clustermail/cluster"
	"clustermail/queue"
)

// Reassigner is a leader duty: the remote recipients of a node that gossip
// reports dead (past the grace period) move to a live node holding the
// body, so their delivery goes on. Mailbox recipients stay with their owner.
func (r *Router) Reassigner(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	missing := map[string]time.Time{} // nodes gossip does not know, since when
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.m.loops.WithLabelValues("reassign").Inc()
		r.reassign(ctx, missing)
	}
}

func (r *Router) reassign(ctx context.Context, missing map[string]time.Time) {
	now := time.Now()
	live := map[string]bool{}
	for _, m := range r.members.LiveNodes() {
		live[m.Name] = true
	}
	// gone reports whether node has been away long enough to take its work.
	gone := func(node string) bool {
		if live[node] {
			delete(missing, node)
			return false
		}
		m, ok := r.members.Node(node)
		switch {
		case ok && m.State != cluster.StateAlive:
			return now.Sub(m.Since) >= r.cfg.ReassignAfter
		case !ok:
			if _, seen := missing[node]; !seen {
				missing[node] = now
			}
			return now.Sub(missing[node]) >= r.cfg.ReassignAfter
		}
		return false
	}
	type move struct{ id, from, to string }
	var moves []move
	_ = r.queue.List(func(e queue.Entry) bool {
		from := map[string]bool{}
		for _, rc := range e.Recipients {
			if rc.Remote && !rc.Final() && !from[rc.Node] && gone(rc.Node) {
				from[rc.Node] = true
			}
		}
		for node := range from {
			to := ""
			for _, h := range e.Holders {
				if live[h] {
					to = h
					break
				}
			}
			if to == "" {
				r.log.Warn("cannot reassign: no live node holds the body", "queue_id", e.ID, "node", node)
				continue
			}
			moves = append(moves, move{e.ID, node, to})
		}
		return true
	})
	for _, m := range moves {
		if err := r.queue.Reassign(ctx, m.id, m.from, m.to); err != nil {
			r.log.Warn("reassign failed", "queue_id", m.id, "from", m.from, "to", m.to, "err", err)
			continue
		}
		r.log.Info("reassigned remote recipients of a dead node", "queue_id", m.id, "from", m.from, "to", m.to)
	}
}
