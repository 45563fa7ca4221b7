package faults

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"clustermail/api"
)

// result is what the checker found for one scenario.
type result struct {
	sent, acked, delivered, lost, dup  int
	r4, r5, noReply                    int
	unackedDelivered, refusedDelivered int // delivered without a 250: allowed after no reply, suspicious after a 4xx/5xx
	stray                              int // in a mailbox that was not a recipient, or a number never sent
	undrained                          int // queue entries left at the deadline
	duration                           time.Duration
}

func (r result) line(scenario string) string {
	return fmt.Sprintf("RESULT scenario=%s acked=%d delivered=%d lost=%d dup=%d refused4xx=%d duration=%s"+
		" sent=%d refused5xx=%d noreply=%d unacked_delivered=%d refused_delivered=%d stray=%d undrained=%d",
		scenario, r.acked, r.delivered, r.lost, r.dup, r.r4, r.duration.Round(100*time.Millisecond),
		r.sent, r.r5, r.noReply, r.unackedDelivered, r.refusedDelivered, r.stray, r.undrained)
}

// check waits for a healthy cluster and an empty queue, reads every mailbox
// and compares it with what the writer recorded.
func check(c *cluster, w *writer) result {
	t := c.t
	t.Helper()
	c.waitHealthy(2 * time.Minute)

	var r result
	var queue []api.QueueSummary
	err := poll(3*time.Minute, func() error {
		var errs []string
		for _, n := range c.nodes {
			ctx, cancel := actx()
			q, err := n.api.Queue(ctx)
			cancel()
			if err != nil {
				errs = append(errs, n.name+": "+err.Error())
				continue
			}
			queue = q
			if len(q) > 0 {
				return fmt.Errorf("%d entries still queued", len(q))
			}
			return nil
		}
		return fmt.Errorf("no node lists the queue: %s", strings.Join(errs, "; "))
	})
	if err != nil {
		r.undrained = len(queue)
		t.Errorf("the queue did not drain: %v", err)
		for i, q := range queue {
			if i == 10 {
				break
			}
			ctx, cancel := actx()
			e, err := c.nodes[0].api.QueueEntry(ctx, q.ID)
			cancel()
			t.Logf("still queued: %+v %v", e, err)
		}
	} else {
		c.event("queue drained")
	}

	// address -> number -> copies
	got := map[string]map[int]int{}
	prefix := subjectPrefix(w.scenario)
	for _, acct := range w.accounts {
		var msgs []api.MessageSummary
		c.waitFor(time.Minute, "the mailbox of "+acct.addr, func() error {
			var errs []string
			for _, n := range c.nodes {
				ctx, cancel := context30()
				m, err := n.api.Messages(ctx, acct.addr)
				cancel()
				if err == nil {
					msgs = m
					return nil
				}
				errs = append(errs, n.name+": "+err.Error())
			}
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		})
		got[acct.addr] = map[int]int{}
		for _, m := range msgs {
			num, err := strconv.Atoi(strings.TrimPrefix(m.Subject, prefix))
			if !strings.HasPrefix(m.Subject, prefix) || err != nil {
				r.stray++
				t.Errorf("%s: a message that is not the writer's: uid %d %q", acct.addr, m.UID, m.Subject)
				continue
			}
			got[acct.addr][num]++
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	sent := map[int]*attempt{}
	var lost, dups, ghosts, perm []string
	for _, a := range w.attempts {
		sent[a.n] = a
		if a.result == pending {
			continue
		}
		r.sent++
		copies := map[string]int{}
		missing, dup, any := false, false, false
		for _, rc := range a.rcpts {
			n := got[rc][a.n]
			copies[rc] = n
			missing = missing || n == 0
			dup = dup || n > 1
			any = any || n > 0
		}
		desc := fmt.Sprintf("#%d via %s at %s: %s %d %s %q -> %v", a.n, a.via, a.end.Sub(c.start).Round(10*time.Millisecond),
			a.result, a.code, a.stage, a.reply, copies)
		if dup {
			r.dup++
			dups = append(dups, desc)
		}
		switch a.result {
		case acked:
			r.acked++
			if missing {
				r.lost++
				lost = append(lost, desc)
			} else {
				r.delivered++
			}
		case refused4xx, refused5xx:
			if a.result == refused4xx {
				r.r4++
			} else {
				r.r5++
				perm = append(perm, desc)
			}
			if any {
				r.refusedDelivered++
				ghosts = append(ghosts, desc)
			}
		case noReply:
			r.noReply++
			if any {
				r.unackedDelivered++
			}
		}
	}
	// Copies in a mailbox that was not among the recipients, or of a
	// number never sent.
	for addr, nums := range got {
		for num := range nums {
			a := sent[num]
			if a == nil || !contains(a.rcpts, addr) {
				r.stray++
				t.Errorf("%s holds #%d, which was not sent to it", addr, num)
			}
		}
	}
	r.duration = time.Since(w.start)

	report := func(what string, list []string) {
		if len(list) == 0 {
			return
		}
		sort.Strings(list)
		if len(list) > 30 {
			list = append(list[:30], fmt.Sprintf("... and %d more", len(list)-30))
		}
		t.Logf("%s (%d):\n  %s", what, len(list), strings.Join(list, "\n  "))
	}
	report("LOST: acknowledged, never delivered", lost)
	report("DUPLICATED", dups)
	report("refused with 5xx", perm)
	report("refused with 4xx/5xx, yet delivered (a client retry would make a duplicate)", ghosts)
	t.Logf("replies other than 250:\n%s", w.refusals())
	return r
}

// refusals summarises the replies other than 250, by node and reply, with
// the span of time (since the cluster came up) they were seen in.
func (w *writer) refusals() string {
	type span struct {
		n           int
		first, last time.Time
	}
	seen := map[string]*span{}
	for _, a := range w.attempts {
		if a.result == acked || a.result == pending {
			continue
		}
		reply := a.reply
		if i := strings.Index(reply, " (01"); i > 0 { // drop queue ids from "not queued (ID)"
			reply = reply[:i]
		}
		k := fmt.Sprintf("%s %s %d at %s: %s", a.via, a.result, a.code, a.stage, trimReply(reply))
		sp := seen[k]
		if sp == nil {
			sp = &span{first: a.end, last: a.end}
			seen[k] = sp
		}
		sp.n++
		if a.end.Before(sp.first) {
			sp.first = a.end
		}
		if a.end.After(sp.last) {
			sp.last = a.end
		}
	}
	var lines []string
	for _, k := range keys(seen) {
		sp := seen[k]
		lines = append(lines, fmt.Sprintf("  %5d  %s  (%.1fs-%.1fs)", sp.n, k, sp.first.Sub(w.c.start).Seconds(), sp.last.Sub(w.c.start).Seconds()))
	}
	if len(lines) == 0 {
		return "  none"
	}
	return strings.Join(lines, "\n")
}

// trimReply shortens connection errors, which carry changing ports.
func trimReply(s string) string {
	for _, e := range []string{"connection refused", "connection reset by peer", "i/o timeout", "EOF", "broken pipe"} {
		if strings.Contains(s, e) {
			return e
		}
	}
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
