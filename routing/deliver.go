package routing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"clustermail/queue"
)

// Run runs this node's delivery worker and body sweeper until ctx ends.
func (r *Router) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.deliverLoop(ctx) }()
	go func() { defer wg.Done(); r.sweepLoop(ctx) }()
	wg.Wait()
}

// deliverLoop delivers the recipients assigned to this node. It wakes on
// every queue change and at least every second for retries.
func (r *Router) deliverLoop(ctx context.Context) {
	self := r.members.Name()
	sem := make(chan struct{}, r.cfg.Workers)
	var mu sync.Mutex
	busy := map[string]bool{}
	retryAt := map[string]time.Time{} // entries whose body could not be fetched
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		r.m.loops.WithLabelValues("deliver").Inc()
		changed := r.queue.Changed()
		ids, err := r.queue.Assigned(self)
		if err != nil {
			r.log.Error("delivery: list assigned entries", "err", err)
		}
		now := time.Now()
		for _, id := range ids {
			mu.Lock()
			skip := busy[id] || now.Before(retryAt[id])
			if !skip {
				busy[id] = true
			}
			mu.Unlock()
			if skip {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func(id string) {
				defer wg.Done()
				defer func() { <-sem }()
				wait := r.deliverEntry(ctx, id)
				mu.Lock()
				delete(busy, id)
				if wait > 0 {
					retryAt[id] = time.Now().Add(wait)
				} else {
					delete(retryAt, id)
				}
				mu.Unlock()
			}(id)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// deliverEntry delivers the due recipients of one entry assigned to this
// node and reports the results through Raft. It returns how long to wait
// before trying the entry again when it could not make progress.
func (r *Router) deliverEntry(ctx context.Context, id string) time.Duration {
	self := r.members.Name()
	lg := r.log.With("queue_id", id)
	e, ok, err := r.queue.Get(id)
	if err != nil || !ok {
		return 0
	}
	now := time.Now()
	var due []int
	for i, rc := range e.Recipients {
		if rc.Node == self && !rc.Final() && !now.Before(rc.NextAttempt) {
			due = append(due, i)
		}
	}
	if len(due) == 0 {
		return 0
	}
	body, err := r.body(ctx, e)
	if err != nil {
		lg.Warn("delivery postponed: body unavailable", "err", err)
		r.m.deliveries.WithLabelValues("no_body").Inc()
		return 5 * time.Second
	}
	var results []queue.Result
	for _, i := range due {
		rc := e.Recipients[i]
		uid, dup, err := r.mail.Deliver(rc.Addr, id+"/"+rc.Addr, e.Created, body)
		if err != nil {
			lg.Warn("local delivery failed; will retry", "rcpt", rc.Addr, "err", err)
			r.m.deliveries.WithLabelValues("deferred").Inc()
			results = append(results, queue.Result{Index: i, State: queue.StatePending,
				Reply: "451 4.3.0 " + err.Error(), NextAttempt: time.Now().Add(backoff(rc.Attempts))})
			continue
		}
		r.m.deliveries.WithLabelValues("delivered").Inc()
		lg.Info("delivered", "rcpt", rc.Addr, "uid", uid, "duplicate", dup)
		results = append(results, queue.Result{Index: i, State: queue.StateDelivered, Reply: "250 2.0.0 delivered to mailbox"})
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.queue.Report(rctx, id, self, results); err != nil {
		// The mailbox write is idempotent, so delivering again after a
		// failed report never makes a duplicate.
		lg.Warn("delivery result not committed; will retry", "err", err)
		return 2 * time.Second
	}
	return 0
}

// backoff for a local delivery that failed (disk trouble, quota).
func backoff(attempts int) time.Duration {
	d := 30 * time.Second << min(attempts, 6)
	return min(d, time.Hour)
}

// body returns the message from the local spool or, failing that, from
// another holder.
func (r *Router) body(ctx context.Context, e queue.Entry) ([]byte, error) {
	if b, err := r.spool.Get(e.ID); err == nil {
		return b, nil
	}
	var errs []error
	for _, h := range e.Holders {
		if h == r.members.Name() {
			continue
		}
		m, ok := r.members.Node(h)
		if !ok || m.State != "alive" {
			errs = append(errs, fmt.Errorf("%s: not alive", h))
			continue
		}
		b, err := r.fetch(ctx, m.Meta.RaftAddr, e.ID)
		if err == nil {
			return b, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", h, err))
	}
	return nil, fmt.Errorf("no holder could provide the body: %w", errors.Join(errs...))
}

func (r *Router) fetch(ctx context.Context, addr, id string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/internal/spool/"+id, nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.rpc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get body: %s", resp.Status)
	}
	return io.ReadAll(resp.Body)
}
