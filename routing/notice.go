package routing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"clustermail/dsn"
	"clustermail/queue"
)

// Notice kinds, part of the notice's queue id so that building the same
// notice twice yields the same id.
const (
	noticeBounce = "b"
	noticeDelay  = "d"
)

// noticeRecipient is one line of a DSN.
type noticeRecipient struct {
	rc      queue.Recipient
	reply   string
	status  string // enhanced status, "" to derive it from the reply
	mta     string // the remote host that answered, if any
	attempt time.Time
}

// buildNotice queues-to-be a DSN about e to its sender: it renders the
// report, stores its body on holders, and returns the entry to commit with
// the report that caused it. nil when no notice is due (null sender: never
// a DSN about a DSN).
func (r *Router) buildNotice(ctx context.Context, e queue.Entry, kind string, rcpts []noticeRecipient, original []byte) (*queue.Entry, error) {
	if e.From == "" || len(rcpts) == 0 {
		return nil, nil
	}
	targets, err := r.ResolveAny(e.From)
	if err != nil {
		// The sender is an unknown address of a hosted domain: nobody to tell.
		r.log.Warn("no delivery notice: sender cannot receive mail", "queue_id", e.ID, "from", e.From, "err", err)
		return nil, nil
	}
	m := dsn.Message{ReportingMTA: r.cfg.Hostname, QueueID: e.ID, Arrival: e.Created, To: e.From, Original: original, Now: time.Now()}
	var idx []string
	for _, n := range rcpts {
		d := dsn.Recipient{Final: n.rc.Addr, Original: n.rc.Orig, Action: dsn.Failed, Status: n.status,
			Reply: n.reply, RemoteMTA: n.mta, LastAttempt: n.attempt}
		if kind == noticeDelay {
			d.Action = dsn.Delayed
			d.WillRetryUntil = e.Created.Add(r.cfg.QueueLifetime)
		}
		m.Recipients = append(m.Recipients, d)
		idx = append(idx, n.rc.Addr)
	}
	body, err := dsn.Build(m)
	if err != nil {
		return nil, fmt.Errorf("build %s notice for %s: %w", kind, e.ID, err)
	}
	sum := sha256.Sum256([]byte(strings.Join(idx, "\x00")))
	id := e.ID + "-" + kind + hex.EncodeToString(sum[:4])
	holders, ticket, err := r.replicate(ctx, id, targets, body)
	if err == nil {
		// The notice rides in a delivery report proposed later, not
		// necessarily from a synced append after this write: sync now.
		err = r.spool.Sync(ticket)
	}
	if err != nil {
		return nil, fmt.Errorf("store %s notice for %s: %w", kind, e.ID, err)
	}
	n := &queue.Entry{ID: id, From: "", Created: time.Now().UTC(), Size: int64(len(body)), Node: r.members.Name(), Holders: holders}
	for _, t := range targets {
		n.Recipients = append(n.Recipients, queue.Recipient{Addr: t.Addr, Orig: t.Orig, Node: t.Node, Remote: t.Remote, State: queue.StatePending})
	}
	return n, nil
}

// retryDelay is the wait before attempt number attempts+1.
func (r *Router) retryDelay(attempts int) time.Duration {
	s := r.cfg.RetrySchedule
	if len(s) == 0 {
		return time.Hour
	}
	return s[min(attempts, len(s)-1)]
}

// ParseSchedule parses "1m,5m,15m,30m,1h"; the last step repeats.
func ParseSchedule(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, p := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(p))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("retry schedule %q: bad step %q", s, p)
		}
		out = append(out, d)
	}
	return out, nil
}

// Bounce fails every pending recipient of an entry on an operator's
// request and sends the sender a bounce, from whichever node is asked.
func (r *Router) Bounce(ctx context.Context, id string) error {
	e, ok, err := r.queue.Get(id)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: queue entry %s", ErrNoEntry, id)
	}
	body, err := r.body(ctx, e)
	if err != nil {
		body = nil // the bounce goes out without the original headers
	}
	const reply = "554 5.0.0 bounced by the mail administrator"
	var results []queue.Result
	var rcpts []noticeRecipient
	for i, rc := range e.Recipients {
		if !rc.Final() {
			results = append(results, queue.Result{Index: i, State: queue.StateFailed, Reply: reply})
			rcpts = append(rcpts, noticeRecipient{rc: rc, reply: reply, attempt: time.Now()})
		}
	}
	notice, err := r.buildNotice(ctx, e, noticeBounce, rcpts, body)
	if err != nil {
		return err
	}
	return r.queue.ReportWith(ctx, id, "operator", results, queue.ReportOptions{Force: true, Notice: notice})
}

// ErrNoEntry means the queue has no such entry.
var ErrNoEntry = errors.New("no such queue entry")
