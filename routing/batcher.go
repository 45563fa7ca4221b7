package routing

import (
	"slices"
	"strings"
	"sync"
	"time"

	"clustermail/mailstore"
)

// batcher groups mailbox deliveries by account. Deliveries to one account
// are serialised by the store (one transaction, one fsync each); a delivery
// that arrives while another for the same account is being committed waits
// and joins the next commit with everything else that arrived meanwhile. A
// busy mailbox then costs one fsync per batch, not per message. The first
// delivery to an idle account waits a moment (linger) for others to share
// its commit: mail arriving steadily, not in bursts, still shares fsyncs.
// A batch is stored in queue id order, which is the order of acceptance,
// so that UIDs follow it even though deliveries run in parallel.
type batcher struct {
	deliver func(account string, ds []mailstore.Delivery) ([]mailstore.DeliveryResult, error)
	linger  time.Duration
	company int // the linger ends once this many deliveries wait: no more can come

	mu       sync.Mutex
	accounts map[string]*accountBatch
}

type accountBatch struct {
	pending []*deliveryJob
	full    chan struct{} // while the first batch lingers: closed when company is there
}

type deliveryJob struct {
	d    mailstore.Delivery
	done chan mailstore.DeliveryResult
}

// batch limits: a commit holds at most this many messages or bytes.
const (
	batchMessages = 256
	batchBytes    = 32 << 20
)

// newBatcher returns a batcher for up to company deliveries at a time (the
// node's delivery workers).
func newBatcher(deliver func(string, []mailstore.Delivery) ([]mailstore.DeliveryResult, error), company int) *batcher {
	return &batcher{deliver: deliver, linger: deliverLinger, company: company, accounts: map[string]*accountBatch{}}
}

// deliverLinger is how long the first delivery to an idle mailbox waits for
// company. The 250 does not wait for it, only delivery into the mailbox.
const deliverLinger = 5 * time.Millisecond

// Deliver stores one message, possibly together with others for the same
// account, and returns its own outcome.
func (b *batcher) Deliver(account string, d mailstore.Delivery) (uint32, bool, error) {
	j := &deliveryJob{d: d, done: make(chan mailstore.DeliveryResult, 1)}
	b.mu.Lock()
	q, running := b.accounts[account]
	if !running {
		q = &accountBatch{full: make(chan struct{})}
		b.accounts[account] = q
	}
	q.pending = append(q.pending, j)
	if q.full != nil && len(q.pending) >= b.company {
		close(q.full)
		q.full = nil
	}
	b.mu.Unlock()
	if !running {
		go b.run(account, q)
	}
	r := <-j.done
	return r.UID, r.Duplicate, r.Err
}

// run commits the account's pending deliveries, batch after batch, until
// none is left.
func (b *batcher) run(account string, q *accountBatch) {
	b.mu.Lock()
	full := q.full
	b.mu.Unlock()
	if full != nil {
		t := time.NewTimer(b.linger)
		select {
		case <-t.C:
		case <-full:
		}
		t.Stop()
		b.mu.Lock()
		q.full = nil
		b.mu.Unlock()
	}
	for {
		b.mu.Lock()
		if len(q.pending) == 0 {
			delete(b.accounts, account)
			b.mu.Unlock()
			return
		}
		n, size := 0, 0
		for n < len(q.pending) && n < batchMessages && (n == 0 || size+len(q.pending[n].d.Body) <= batchBytes) {
			size += len(q.pending[n].d.Body)
			n++
		}
		jobs := q.pending[:n:n]
		q.pending = q.pending[n:]
		b.mu.Unlock()
		slices.SortStableFunc(jobs, func(x, y *deliveryJob) int { return strings.Compare(x.d.Key, y.d.Key) })

		ds := make([]mailstore.Delivery, len(jobs))
		for i, j := range jobs {
			ds[i] = j.d
		}
		res, err := b.deliver(account, ds)
		for i, j := range jobs {
			if err != nil {
				j.done <- mailstore.DeliveryResult{Err: err}
			} else {
				j.done <- res[i]
			}
		}
	}
}
