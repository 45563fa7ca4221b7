// Package queue is the replicated delivery queue: one entry per accepted
// message, with its envelope, the nodes that hold its body and each
// recipient's state. Entries are Raft state; bodies are not (see spool).
package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"clustermail/raftstore"
)

// Command types of the queue. Append-only: never renumber.
const (
	cmdAdd      raftstore.CommandType = 20
	cmdUpdate   raftstore.CommandType = 21
	cmdDelete   raftstore.CommandType = 22
	cmdReassign raftstore.CommandType = 23
	cmdRetry    raftstore.CommandType = 24
)

// Key tables inside raftstore.PrefixQueue's range.
const (
	tblEntry = raftstore.PrefixQueue + 0 // id -> Entry
	tblWork  = raftstore.PrefixQueue + 1 // node \x00 id -> "" while the node has pending recipients
)

// Recipient states.
const (
	StatePending   = "pending"
	StateDelivered = "delivered"
	StateFailed    = "failed"
)

// Recipient is one final destination of a message.
type Recipient struct {
	Addr        string    `json:"addr"`             // the mailbox or remote address delivered to
	Orig        string    `json:"orig,omitempty"`   // the RCPT TO address when an alias expanded
	Node        string    `json:"node"`             // the node that delivers it
	Remote      bool      `json:"remote,omitempty"` // delivered out through DNS, not into a mailbox here
	Junk        bool      `json:"junk,omitempty"`   // into the Junk mailbox (DMARC quarantine); older nodes ignore it: INBOX
	State       string    `json:"state"`
	Attempts    int       `json:"attempts,omitempty"`
	LastReply   string    `json:"last_reply,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Updated     time.Time `json:"updated,omitzero"`
}

// Final reports whether nothing more will happen to the recipient.
func (r Recipient) Final() bool { return r.State == StateDelivered || r.State == StateFailed }

// Entry is one queued message.
type Entry struct {
	ID         string      `json:"id"`
	From       string      `json:"from"` // "" is the null sender
	Created    time.Time   `json:"created"`
	Size       int64       `json:"size"`
	Node       string      `json:"node"`    // the node that accepted it
	Holders    []string    `json:"holders"` // nodes with the body on disk
	Recipients []Recipient `json:"recipients"`
	// DelayNotified is set once the sender was told delivery is delayed.
	DelayNotified bool `json:"delay_notified,omitempty"`
}

// Pending counts the recipients not yet final.
func (e Entry) Pending() int {
	n := 0
	for _, r := range e.Recipients {
		if !r.Final() {
			n++
		}
	}
	return n
}

// Applier commits a command through Raft from any node.
type Applier interface {
	Apply(ctx context.Context, cmd []byte) error
}

// Queue reads and writes the replicated queue.
type Queue struct {
	state raftstore.Reader
	apply Applier

	mu      sync.Mutex
	changed chan struct{}
	removed chan string

	local string      // this node's name: its new work is handed over directly
	work  chan string // ids with pending recipients for local, lossy
}

// New returns the queue over the replicated state.
func New(state raftstore.Reader, apply Applier) *Queue {
	return &Queue{state: state, apply: apply, changed: make(chan struct{}), removed: make(chan string, 4096),
		work: make(chan string, 8192)}
}

// SetLocal names this node, whose newly pending work Work announces. Call
// before Raft starts.
func (q *Queue) SetLocal(node string) { q.local = node }

// Work announces ids of entries that just got (or kept) pending recipients
// assigned to the local node, so its worker needs no scan of the queue per
// change. Lossy by design: the worker also rescans periodically.
func (q *Queue) Work() <-chan string { return q.work }

// SetApplier sets the write path once consensus is up: the queue's
// handlers must be registered before Raft starts, which needs the queue.
func (q *Queue) SetApplier(a Applier) { q.apply = a }

// Changed returns a channel closed at the next change of the queue, so
// workers sleep until there is something to do.
func (q *Queue) Changed() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.changed
}

func (q *Queue) notify() {
	q.mu.Lock()
	close(q.changed)
	q.changed = make(chan struct{})
	q.mu.Unlock()
}

// Removed delivers the ids of entries that became final, so holders can drop
// their bodies at once. It is lossy by design: a periodic sweep catches up.
func (q *Queue) Removed() <-chan string { return q.removed }

func entryKey(id string) []byte { return append([]byte{tblEntry}, id...) }

func workKey(node, id string) []byte {
	k := append([]byte{tblWork}, node...)
	k = append(k, 0)
	return append(k, id...)
}

// Get returns one entry.
func (q *Queue) Get(id string) (Entry, bool, error) { return get(q.state, id) }

func get(r raftstore.Reader, id string) (Entry, bool, error) {
	var e Entry
	b, ok, err := r.Get(entryKey(id))
	if err != nil || !ok {
		return e, ok, err
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, false, fmt.Errorf("decode queue entry %s: %w", id, err)
	}
	return e, true, nil
}

// Assigned returns the ids of entries with pending recipients for node.
func (q *Queue) Assigned(node string) ([]string, error) {
	var ids []string
	lower := workKey(node, "")
	upper := append(append([]byte{tblWork}, node...), 1)
	err := q.state.Iter(lower, upper, func(k, _ []byte) bool {
		ids = append(ids, string(k[len(lower):]))
		return true
	})
	return ids, err
}

// List calls fn for every entry in id (that is, age) order until fn is false.
func (q *Queue) List(fn func(Entry) bool) error {
	var derr error
	err := q.state.Iter([]byte{tblEntry}, []byte{tblEntry + 1}, func(_, v []byte) bool {
		var e Entry
		if derr = json.Unmarshal(v, &e); derr != nil {
			return false
		}
		return fn(e)
	})
	if err == nil {
		err = derr
	}
	return err
}

// Has reports whether an entry exists.
func (q *Queue) Has(id string) bool {
	_, ok, err := q.state.Get(entryKey(id))
	return ok && err == nil
}
