package routing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"clustermail/queue"
	"clustermail/raftstore"
)

// ErrTemporary wraps every failure to accept: the client gets a 4xx and
// retries, since nothing was promised yet.
var ErrTemporary = errors.New("temporary failure")

// Accept stores a message durably on at least two nodes (one in a
// single-node cluster), commits its queue entry through Raft, and only then
// returns: the first promise of the design. Any failure
// returns an error wrapping ErrTemporary.
//
// This node's copy is written without its own fsync and made durable
// before the return: usually by the Raft append of the entry itself, which
// on the leader (and on a follower that stored it) is a synced write to
// the same log, after the body's; otherwise by one fsync after the commit.
// The other holders' copies are synced before the entry is proposed.
func (r *Router) Accept(ctx context.Context, id, from string, targets []Target, body []byte) error {
	lg := r.log.With("queue_id", id)
	t0 := time.Now()
	holders, ticket, err := r.replicate(ctx, id, targets, body)
	r.m.stage.WithLabelValues("body").Observe(time.Since(t0).Seconds())
	if err != nil {
		r.m.acceptErrs.WithLabelValues("body").Inc()
		lg.Warn("message not accepted: body not stored on enough nodes", "err", err)
		return fmt.Errorf("%w: %v", ErrTemporary, err)
	}
	e := queue.Entry{ID: id, From: from, Created: time.Now().UTC(), Size: int64(len(body)), Node: r.members.Name(), Holders: holders}
	for _, t := range targets {
		e.Recipients = append(e.Recipients, queue.Recipient{Addr: t.Addr, Orig: t.Orig, Node: t.Node, Remote: t.Remote, Junk: t.Junk, State: queue.StatePending})
	}
	t1 := time.Now()
	// Nothing here reads the entry back: the 250 need not wait until this
	// replica has applied it, only until it is committed.
	err = r.queue.Add(raftstore.NoReadBack(ctx), e)
	r.m.stage.WithLabelValues("queue").Observe(time.Since(t1).Seconds())
	if err != nil {
		r.m.acceptErrs.WithLabelValues("queue").Inc()
		lg.Warn("message not accepted: queue entry not committed", "err", err)
		return fmt.Errorf("%w: %v", ErrTemporary, err)
	}
	if err := r.spool.Sync(ticket); err != nil {
		// The entry is committed and the other holder has the body, so the
		// message will be delivered; the client, told 4xx, may send it
		// again, as after any failure between the commit and the 250.
		r.m.acceptErrs.WithLabelValues("body").Inc()
		lg.Error("message queued but this node's copy not synced", "err", err)
		return fmt.Errorf("%w: %v", ErrTemporary, err)
	}
	r.m.accepted.Inc()
	lg.Info("queued", "from", from, "recipients", len(targets), "size", len(body), "holders", holders)
	return nil
}

// replicate stores the body here and on other live nodes, preferring the
// owners of the recipients (they then deliver from their own disk), until
// it holds on enough nodes.
func (r *Router) replicate(ctx context.Context, id string, targets []Target, body []byte) (holders []string, ticket uint64, err error) {
	self := r.members.Name()
	need := 1
	if r.members.Servers() >= 2 {
		need = 2
	}
	live := map[string]string{} // name -> cluster address
	for _, m := range r.members.LiveNodes() {
		live[m.Name] = m.Meta.RaftAddr
	}
	var preferred, others []string
	seen := map[string]bool{self: true}
	for _, t := range targets {
		if _, ok := live[t.Node]; ok && !seen[t.Node] && !t.Remote {
			seen[t.Node] = true
			preferred = append(preferred, t.Node)
		}
	}
	for _, m := range r.members.LiveNodes() {
		if !seen[m.Name] {
			seen[m.Name] = true
			others = append(others, m.Name)
		}
	}

	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	store := func(node string) {
		defer wg.Done()
		var err error
		if node == self {
			ticket, err = r.spool.PutUnsynced(id, body)
		} else {
			err = r.putRemote(ctx, live[node], id, body)
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			r.m.bodyPuts.WithLabelValues("error").Inc()
			errs = append(errs, fmt.Errorf("%s: %w", node, err))
			return
		}
		r.m.bodyPuts.WithLabelValues("ok").Inc()
		holders = append(holders, node)
	}
	// First round: this node and the preferred holders, in parallel; then,
	// one by one, other live nodes while we are short.
	first := append([]string{self}, preferred...)
	if len(first) < need && len(others) > 0 {
		first = append(first, others[0])
		others = others[1:]
	}
	wg.Add(len(first))
	for _, n := range first {
		go store(n)
	}
	wg.Wait()
	for _, n := range others {
		if len(holders) >= need {
			break
		}
		wg.Add(1)
		store(n)
	}
	if len(holders) < need {
		return nil, 0, fmt.Errorf("stored on %d of %d nodes needed: %w", len(holders), need, errors.Join(errs...))
	}
	if len(errs) > 0 {
		r.log.Debug("some holders failed", "queue_id", id, "errs", errors.Join(errs...))
	}
	return holders, ticket, nil
}

func (r *Router) putRemote(ctx context.Context, addr, id string, body []byte) error {
	// A holder that cannot take a body in 10 s is replaced by another.
	// A second for each MiB on top of the dial and fsync: a 25 MB message
	// between distant holders must not time out every retry.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second+time.Duration(len(body)>>20)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "PUT", "http://"+addr+"/internal/spool/"+id, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := r.rpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("put body: %s", resp.Status)
	}
	return nil
}
