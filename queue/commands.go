package queue

import (
	"context"
	"encoding/json"
	"time"

	"clustermail/raftstore"
)

// Register adds the queue's command handlers to the state machine.
func (q *Queue) Register(f *raftstore.FSM) {
	f.Register(cmdAdd, q.applyAdd)
	f.Register(cmdUpdate, q.applyUpdate)
	f.Register(cmdDelete, q.applyDelete)
	f.Register(cmdReassign, q.applyReassign)
	f.Register(cmdRetry, q.applyRetry)
	f.OnRestore(q.notify)
}

// Result is one recipient's outcome reported by the node delivering it.
type Result struct {
	Index       int       `json:"index"`
	State       string    `json:"state"`
	Reply       string    `json:"reply,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
}

type update struct {
	ID      string    `json:"id"`
	Node    string    `json:"node"`
	Time    time.Time `json:"time"`
	Results []Result  `json:"results"`
	// Force lets an operator decide recipients assigned to any node.
	Force bool `json:"force,omitempty"`
	// DelayNotified marks that Notice is the delay notice.
	DelayNotified bool `json:"delay_notified,omitempty"`
	// Notice is a DSN to queue together with this update, so that the
	// update and its notice commit once, together, or not at all.
	Notice *Entry `json:"notice,omitempty"`
}

type reassign struct {
	ID   string `json:"id"`
	From string `json:"from"`
	To   string `json:"to"`
}

type retry struct {
	IDs []string `json:"ids,omitempty"` // empty: every entry
}

type deletion struct {
	ID string `json:"id"`
}

func (q *Queue) applyAdd(tx *raftstore.Tx, p []byte) error {
	var e Entry
	raftstore.Decode(p, &e)
	if _, ok, err := tx.Get(entryKey(e.ID)); err != nil {
		panic(err)
	} else if ok {
		return nil // a retried proposal of the same message: already queued
	}
	q.write(tx, e, nil)
	return nil
}

func (q *Queue) applyUpdate(tx *raftstore.Tx, p []byte) error {
	var u update
	raftstore.Decode(p, &u)
	e, ok, err := get(tx, u.ID)
	if err != nil {
		panic(err)
	}
	if !ok {
		return raftstore.Errorf(raftstore.CodeNotFound, "queue entry %s does not exist", u.ID)
	}
	if len(u.Results) == 0 && !u.DelayNotified && u.Notice == nil {
		// An empty report is a read barrier (routing, before a remote
		// delivery): it is answered, and changes nothing on any node.
		return nil
	}
	before := e.Recipients
	e.Recipients = append([]Recipient(nil), before...)
	changed := false
	for _, r := range u.Results {
		if r.Index < 0 || r.Index >= len(e.Recipients) {
			continue
		}
		rc := &e.Recipients[r.Index]
		// Only the node the recipient is assigned to may report on it, and a
		// final state never changes: a late or duplicated report is ignored.
		if rc.Final() || (rc.Node != u.Node && !u.Force) {
			continue
		}
		changed = changed || r.State != StatePending
		rc.State = r.State
		rc.Attempts++
		rc.LastReply = r.Reply
		rc.NextAttempt = r.NextAttempt
		rc.Updated = u.Time
	}
	if u.DelayNotified && !e.DelayNotified {
		e.DelayNotified = true
		changed = true
	}
	// The notice goes with the change that caused it: a repeated update
	// changes nothing and so queues no second notice.
	if u.Notice != nil && changed {
		if _, ok, err := tx.Get(entryKey(u.Notice.ID)); err != nil {
			panic(err)
		} else if !ok {
			q.write(tx, *u.Notice, nil)
		}
	}
	q.write(tx, e, before)
	return nil
}

func (q *Queue) applyReassign(tx *raftstore.Tx, p []byte) error {
	var ra reassign
	raftstore.Decode(p, &ra)
	e, ok, err := get(tx, ra.ID)
	if err != nil {
		panic(err)
	}
	if !ok {
		return raftstore.Errorf(raftstore.CodeNotFound, "queue entry %s does not exist", ra.ID)
	}
	before := e.Recipients
	e.Recipients = append([]Recipient(nil), before...)
	for i := range e.Recipients {
		// Only remote recipients move: a mailbox is delivered by its owner.
		if rc := &e.Recipients[i]; rc.Remote && !rc.Final() && rc.Node == ra.From {
			rc.Node = ra.To
		}
	}
	q.write(tx, e, before)
	return nil
}

func (q *Queue) applyRetry(tx *raftstore.Tx, p []byte) error {
	var rt retry
	raftstore.Decode(p, &rt)
	ids := rt.IDs
	if len(ids) == 0 {
		_ = tx.Iter([]byte{tblEntry}, []byte{tblEntry + 1}, func(k, _ []byte) bool {
			ids = append(ids, string(k[1:]))
			return true
		})
	}
	for _, id := range ids {
		e, ok, err := get(tx, id)
		if err != nil {
			panic(err)
		}
		if !ok {
			if len(rt.IDs) > 0 {
				return raftstore.Errorf(raftstore.CodeNotFound, "queue entry %s does not exist", id)
			}
			continue
		}
		for i := range e.Recipients {
			e.Recipients[i].NextAttempt = time.Time{}
		}
		q.write(tx, e, e.Recipients)
	}
	return nil
}

func (q *Queue) applyDelete(tx *raftstore.Tx, p []byte) error {
	var d deletion
	raftstore.Decode(p, &d)
	e, ok, err := get(tx, d.ID)
	if err != nil {
		panic(err)
	}
	if !ok {
		return raftstore.Errorf(raftstore.CodeNotFound, "queue entry %s does not exist", d.ID)
	}
	q.remove(tx, e, e.Recipients)
	return nil
}

// write stores e and keeps the per-node work index in step; an entry whose
// recipients are all final is removed instead.
func (q *Queue) write(tx *raftstore.Tx, e Entry, before []Recipient) {
	done := true
	for _, r := range e.Recipients {
		if !r.Final() {
			done = false
		}
	}
	if done {
		q.remove(tx, e, before)
		return
	}
	for n := range pendingNodes(before) {
		must(tx.Delete(workKey(n, e.ID)))
	}
	local := false
	for n := range pendingNodes(e.Recipients) {
		must(tx.Set(workKey(n, e.ID), nil))
		local = local || n == q.local
	}
	b, err := json.Marshal(e)
	must(err)
	must(tx.Set(entryKey(e.ID), b))
	id := e.ID
	tx.AfterCommit(func() {
		if local {
			select {
			case q.work <- id:
			default:
			}
		}
		q.notify()
	})
}

func (q *Queue) remove(tx *raftstore.Tx, e Entry, before []Recipient) {
	for n := range pendingNodes(before) {
		must(tx.Delete(workKey(n, e.ID)))
	}
	must(tx.Delete(entryKey(e.ID)))
	tx.AfterCommit(func() {
		select {
		case q.removed <- e.ID:
		default:
		}
		q.notify()
	})
}

func pendingNodes(rs []Recipient) map[string]bool {
	m := map[string]bool{}
	for _, r := range rs {
		if !r.Final() {
			m[r.Node] = true
		}
	}
	return m
}

func must(err error) {
	if err != nil {
		panic(err) // a failed batch write mid-apply cannot be answered deterministically
	}
}

// Add commits a new entry. Proposing the same entry twice is harmless.
func (q *Queue) Add(ctx context.Context, e Entry) error {
	for i := range e.Recipients {
		if e.Recipients[i].State == "" {
			e.Recipients[i].State = StatePending
		}
	}
	return q.propose(ctx, cmdAdd, e)
}

// Report records the outcome of node's delivery attempts for entry id.
func (q *Queue) Report(ctx context.Context, id, node string, results []Result) error {
	return q.propose(ctx, cmdUpdate, update{ID: id, Node: node, Time: time.Now().UTC(), Results: results})
}

// ReportOptions go with a report.
type ReportOptions struct {
	Force         bool   // an operator decides, whatever the assignment
	DelayNotified bool   // Notice is the delay notice
	Notice        *Entry // a DSN queued if, and only if, the report changes something
}

// ReportWith records results together with a notice to the sender.
func (q *Queue) ReportWith(ctx context.Context, id, node string, results []Result, o ReportOptions) error {
	if o.Notice != nil {
		for i := range o.Notice.Recipients {
			if o.Notice.Recipients[i].State == "" {
				o.Notice.Recipients[i].State = StatePending
			}
		}
	}
	return q.propose(ctx, cmdUpdate, update{ID: id, Node: node, Time: time.Now().UTC(), Results: results,
		Force: o.Force, DelayNotified: o.DelayNotified, Notice: o.Notice})
}

// Reassign moves the pending remote recipients of an entry from one node
// to another (the leader does this when a node is dead).
func (q *Queue) Reassign(ctx context.Context, id, from, to string) error {
	return q.propose(ctx, cmdReassign, reassign{ID: id, From: from, To: to})
}

// RetryNow clears the backoff of the given entries, or of all of them.
func (q *Queue) RetryNow(ctx context.Context, ids ...string) error {
	return q.propose(ctx, cmdRetry, retry{IDs: ids})
}

// Delete drops an entry without notice.
func (q *Queue) Delete(ctx context.Context, id string) error {
	return q.propose(ctx, cmdDelete, deletion{ID: id})
}

func (q *Queue) propose(ctx context.Context, t raftstore.CommandType, payload any) error {
	cmd, err := raftstore.Encode(t, payload)
	if err != nil {
		return err
	}
	return q.apply.Apply(ctx, cmd)
}
