package routing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"clustermail/mailstore"
	"clustermail/outbound"
	"clustermail/queue"
	"clustermail/raftstore"
)

// Run runs this node's delivery worker and body sweeper until ctx ends.
func (r *Router) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.deliverLoop(ctx) }()
	go func() { defer wg.Done(); r.sweepLoop(ctx) }()
	wg.Wait()
}

// deliverLoop delivers the recipients assigned to this node: new work as
// the queue announces it, and everything assigned in a full scan every
// second (retries coming due, announcements lost).
func (r *Router) deliverLoop(ctx context.Context) {
	self := r.members.Name()
	sem := make(chan struct{}, r.cfg.Workers)
	var mu sync.Mutex
	busy := map[string]bool{}
	retryAt := map[string]time.Time{} // entries whose body could not be fetched
	var wg sync.WaitGroup
	defer wg.Wait()
	start := func(id string) bool {
		mu.Lock()
		skip := busy[id] || time.Now().Before(retryAt[id])
		if !skip {
			busy[id] = true
		}
		mu.Unlock()
		if skip {
			return true
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			mu.Lock()
			delete(busy, id)
			mu.Unlock()
			return false
		}
		wg.Add(1)
		go func() {
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
		}()
		return true
	}
	scan := time.NewTicker(time.Second)
	defer scan.Stop()
	for rescan := true; ; {
		if rescan {
			r.m.loops.WithLabelValues("deliver").Inc()
			ids, err := r.queue.Assigned(self)
			if err != nil {
				r.log.Error("delivery: list assigned entries", "err", err)
			}
			for _, id := range ids {
				if !start(id) {
					return
				}
			}
			rescan = false
		}
		select {
		case <-ctx.Done():
			return
		case id := <-r.queue.Work():
			if !start(id) {
				return
			}
		case <-scan.C:
			rescan = true
		}
	}
}

// deliverEntry delivers the due recipients of one entry assigned to this
// node and reports the results through Raft, with the bounce or delay
// notice they call for. It returns how long to wait before trying the entry
// again when it could not make progress.
func (r *Router) deliverEntry(ctx context.Context, id string) time.Duration {
	self := r.members.Name()
	lg := r.log.With("queue_id", id)
	e, ok, err := r.queue.Get(id)
	if err != nil || !ok {
		return 0
	}
	local, remote := due(e, self, time.Now())
	if len(remote) > 0 {
		// A message handed to a remote server cannot be taken back, so the
		// assignment read from this replica must not be stale: after a
		// restart the replica still says what it said before the crash,
		// and the leader may have given these recipients to another node
		// meanwhile (and that node delivered them). An empty report goes
		// through the leader, and the proposing node waits until it has
		// applied it, so the entry read again afterwards is as recent as
		// the leader's was then. Mailbox deliveries need no such check:
		// they are idempotent.
		if err := r.queue.Report(ctx, id, self, nil); err != nil {
			if raftstore.IsCode(err, raftstore.CodeNotFound) {
				return 0 // delivered or removed elsewhere
			}
			lg.Warn("delivery postponed: cannot confirm the assignment with the leader", "err", err)
			return 5 * time.Second
		}
		if e, ok, err = r.queue.Get(id); err != nil || !ok {
			return 0
		}
		local, remote = due(e, self, time.Now())
	}
	if len(local) == 0 && len(remote) == 0 {
		return 0
	}
	body, err := r.body(ctx, e)
	if err != nil {
		lg.Warn("delivery postponed: body unavailable", "err", err)
		r.m.deliveries.WithLabelValues("no_body").Inc()
		return 5 * time.Second
	}
	// Each mailbox is its own batch, whose first delivery may wait a moment
	// for company: a message's recipients wait side by side, not in turn.
	// The last one waits on this goroutine: a message to one local
	// recipient, the usual case, starts none.
	attempts := make([]attempt, len(local))
	var wg sync.WaitGroup
	for k, i := range local {
		if k == len(local)-1 {
			attempts[k] = r.deliverLocal(lg, e, i, body)
			break
		}
		wg.Add(1)
		go func() { defer wg.Done(); attempts[k] = r.deliverLocal(lg, e, i, body) }()
	}
	wg.Wait()
	var out outcome
	for k, i := range local {
		out.add(i, attempts[k])
	}
	for domain, idx := range remote {
		rcpts := make([]string, len(idx))
		for k, i := range idx {
			rcpts[k] = e.Recipients[i].Addr
		}
		res := r.sender.Deliver(ctx, domain, e.From, rcpts, body)
		for k, i := range idx {
			out.add(i, r.remoteResult(lg, e, i, res[k]))
		}
	}
	return r.report(ctx, lg, e, out, body)
}

// due returns the recipients of e that node should try now: mailbox
// recipients by index, remote ones by domain.
func due(e queue.Entry, node string, now time.Time) (local []int, remote map[string][]int) {
	remote = map[string][]int{}
	for i, rc := range e.Recipients {
		if rc.Node != node || rc.Final() || now.Before(rc.NextAttempt) {
			continue
		}
		if rc.Remote {
			d := domainOf(rc.Addr)
			remote[d] = append(remote[d], i)
		} else {
			local = append(local, i)
		}
	}
	return local, remote
}

// attempt is one recipient's outcome before it is reported.
type attempt struct {
	result queue.Result
	status string // enhanced status for a DSN, "" to derive it from the reply
	mta    string
}

type outcome struct {
	idx      []int
	attempts []attempt
}

func (o *outcome) add(i int, a attempt) { o.idx = append(o.idx, i); o.attempts = append(o.attempts, a) }

func (r *Router) deliverLocal(lg *slog.Logger, e queue.Entry, i int, body []byte) attempt {
	rc := e.Recipients[i]
	var quota int64
	if acc, ok, err := r.dir.Account(rc.Addr); err == nil && ok {
		quota = acc.Quota
	}
	uid, dup, err := r.batch.Deliver(rc.Addr, mailstore.Delivery{Key: e.ID + "/" + rc.Addr, Date: e.Created, Body: body, Quota: quota, Junk: rc.Junk})
	if errors.Is(err, mailstore.ErrOverQuota) {
		lg.Info("delivery deferred: mailbox over quota", "rcpt", rc.Addr)
		r.m.attempts.WithLabelValues("local", "4xx").Inc()
		a := r.deferred(e, i, "452 4.2.2 mailbox full: over quota", "")
		if a.result.State == queue.StateFailed {
			a.status = "4.2.2"
		}
		return a
	}
	if err != nil {
		lg.Warn("local delivery failed; will retry", "rcpt", rc.Addr, "err", err)
		r.m.attempts.WithLabelValues("local", "4xx").Inc()
		return r.deferred(e, i, "451 4.3.0 "+oneLine(err.Error()), "")
	}
	r.m.attempts.WithLabelValues("local", "2xx").Inc()
	lg.Info("delivered", "rcpt", rc.Addr, "uid", uid, "duplicate", dup)
	return attempt{result: queue.Result{Index: i, State: queue.StateDelivered, Reply: "250 2.0.0 delivered to mailbox"}}
}

func (r *Router) remoteResult(lg *slog.Logger, e queue.Entry, i int, res outbound.Result) attempt {
	rc := e.Recipients[i]
	switch res.Status {
	case outbound.Delivered:
		r.m.attempts.WithLabelValues("remote", "2xx").Inc()
		lg.Info("delivered", "rcpt", rc.Addr, "remote", res.RemoteMTA, "tls", res.TLS, "reply", res.Reply)
		return attempt{result: queue.Result{Index: i, State: queue.StateDelivered, Reply: res.Reply}, mta: res.RemoteMTA}
	case outbound.Failed:
		r.m.attempts.WithLabelValues("remote", "5xx").Inc()
		lg.Info("delivery failed", "rcpt", rc.Addr, "remote", res.RemoteMTA, "reply", res.Reply)
		return attempt{result: queue.Result{Index: i, State: queue.StateFailed, Reply: res.Reply}, mta: res.RemoteMTA}
	default:
		r.m.attempts.WithLabelValues("remote", "4xx").Inc()
		lg.Info("delivery deferred", "rcpt", rc.Addr, "remote", res.RemoteMTA, "reply", res.Reply)
		return r.deferred(e, i, res.Reply, res.RemoteMTA)
	}
}

// deferred schedules the next attempt, or fails the recipient once the
// message has been queued longer than the queue lifetime.
func (r *Router) deferred(e queue.Entry, i int, reply, mta string) attempt {
	rc := e.Recipients[i]
	if time.Since(e.Created) >= r.cfg.QueueLifetime {
		return attempt{result: queue.Result{Index: i, State: queue.StateFailed,
			Reply: reply + " (gave up: in the queue for more than " + r.cfg.QueueLifetime.String() + ")"},
			status: "4.4.7", mta: mta}
	}
	next := time.Now().Add(r.retryDelay(rc.Attempts))
	return attempt{result: queue.Result{Index: i, State: queue.StatePending, Reply: reply, NextAttempt: next}, mta: mta}
}

// report commits the attempts, with a bounce for the recipients that just
// failed or, once, a delay notice for those still waiting.
func (r *Router) report(ctx context.Context, lg *slog.Logger, e queue.Entry, out outcome, body []byte) time.Duration {
	var failed, waiting []noticeRecipient
	results := make([]queue.Result, len(out.attempts))
	now := time.Now()
	for k, a := range out.attempts {
		results[k] = a.result
		n := noticeRecipient{rc: e.Recipients[out.idx[k]], reply: a.result.Reply, status: a.status, mta: a.mta, attempt: now}
		switch a.result.State {
		case queue.StateFailed:
			failed = append(failed, n)
		case queue.StatePending:
			waiting = append(waiting, n)
		}
	}
	var opts queue.ReportOptions
	var err error
	switch {
	case len(failed) > 0:
		opts.Notice, err = r.buildNotice(ctx, e, noticeBounce, failed, body)
	case len(waiting) > 0 && !e.DelayNotified && time.Since(e.Created) >= r.cfg.DelayWarning:
		opts.Notice, err = r.buildNotice(ctx, e, noticeDelay, waiting, body)
		opts.DelayNotified = opts.Notice != nil
	}
	if err != nil {
		lg.Warn("delivery notice not ready; results wait for it", "err", err)
		return 5 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// Reports may wait a moment to share a Raft entry with others: at
	// most one per delivery worker can come.
	rctx = raftstore.MayWait(rctx, r.cfg.Workers)
	if err := r.queue.ReportWith(rctx, e.ID, r.members.Name(), results, opts); err != nil {
		// Mailbox writes are idempotent, so delivering again after a
		// failed report never makes a duplicate in a mailbox.
		lg.Warn("delivery results not committed; will retry", "err", err)
		return 2 * time.Second
	}
	if opts.Notice != nil {
		lg.Info("delivery notice queued", "notice_id", opts.Notice.ID, "to", e.From, "delay", opts.DelayNotified)
	}
	return 0
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

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
