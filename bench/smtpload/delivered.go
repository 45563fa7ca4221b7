package smtpload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"clustermail/api"
)

// Counter reports how many messages the server under test has delivered
// so far. Only differences matter: WaitDelivered reads it once before the
// load and compares.
type Counter interface {
	Count(ctx context.Context) (int64, error)
}

// CounterFunc adapts a function to Counter.
type CounterFunc func(ctx context.Context) (int64, error)

// Count calls f.
func (f CounterFunc) Count(ctx context.Context) (int64, error) { return f(ctx) }

// CommandCounter runs a shell command whose last line of output holds the
// count, e.g. `find /maildir -path '*/new/*' -type f | wc -l` for Postfix,
// as smtp-load.sh's COUNT_CMD does.
func CommandCounter(command string) Counter {
	return CounterFunc(func(ctx context.Context) (int64, error) {
		out, err := exec.CommandContext(ctx, "sh", "-c", command).Output()
		if err != nil {
			return 0, fmt.Errorf("count command: %w", err)
		}
		lines := strings.Fields(strings.TrimSpace(string(out)))
		if len(lines) == 0 {
			return 0, errors.New("count command printed nothing")
		}
		digits := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, lines[len(lines)-1])
		return strconv.ParseInt(digits, 10, 64)
	})
}

// MailboxCounter counts the messages stored in the recipients' mailboxes,
// summed over the distinct recipients, through a clustermail admin API
// (GET /v1/mailboxes/{address}/stats, answered by the owner node of each
// mailbox). A mailbox holds each (queue id, recipient) once, so the count
// never includes a duplicate from a retried delivery; the delivery
// counters in /metrics can (a delivery whose Raft report failed is tried,
// and counted, again).
func MailboxCounter(c *api.Client, rcpts []string) Counter {
	seen := map[string]bool{}
	var uniq []string
	for _, r := range rcpts {
		k := strings.ToLower(r)
		if !seen[k] {
			seen[k] = true
			uniq = append(uniq, r)
		}
	}
	return CounterFunc(func(ctx context.Context) (int64, error) {
		var n int64
		for _, r := range uniq {
			st, err := c.MailboxStats(ctx, r)
			if err != nil {
				return 0, fmt.Errorf("mailbox stats of %s: %w", r, err)
			}
			n += int64(st.Messages)
		}
		return n, nil
	})
}

// QueueDepth returns the number of entries in a clustermail node's
// replicated queue, from the clustermail_queue_depth series of its
// /metrics (every state summed). The queue is replicated, so one node's
// answer is the cluster's, as of that node's replica.
func QueueDepth(ctx context.Context, apiURL, token string) (int64, error) {
	if !strings.Contains(apiURL, "://") {
		apiURL = "http://" + apiURL
	}
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(apiURL, "/")+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	var n float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "clustermail_queue_depth") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		n += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, errors.New("no clustermail_queue_depth in /metrics")
	}
	return int64(n), nil
}

// Wait says how WaitDelivered watches the server.
type Wait struct {
	Counter Counter
	Before  int64         // the count before the load started
	Poll    time.Duration // between two counts (default 100 ms): the resolution of DeliverS
	Stall   time.Duration // give up after this long without progress (default 60 s)
	Settle  time.Duration // give up after this long in all (default 10 min)
	// Queue, when set, returns the server's queue depth; after the
	// messages are delivered, WaitDelivered waits for it to reach 0 and
	// sets DrainS.
	Queue func(ctx context.Context) (int64, error)
}

// WaitDelivered polls until the counter has grown by res.Accepted since
// w.Before, and fills res.Delivered, DeliverS and DeliverMPS. Times are
// from res.Start, so that, as in the shell scripts, the delivered rate
// covers the whole run. It returns an error when the count stalls or
// cannot be read; res then holds what was reached.
func WaitDelivered(ctx context.Context, res *Result, w Wait) error {
	if w.Poll <= 0 {
		w.Poll = 100 * time.Millisecond
	}
	if w.Stall <= 0 {
		w.Stall = time.Minute
	}
	if w.Settle <= 0 {
		w.Settle = 10 * time.Minute
	}
	deadline := time.Now().Add(w.Settle)
	last, lastChange := int64(-1), time.Now()
	var werr error
	for {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		n, err := w.Counter.Count(cctx)
		cancel()
		now := time.Now()
		if err == nil {
			res.Delivered = n - w.Before
			if res.Delivered >= int64(res.Accepted) {
				break
			}
			if res.Delivered != last {
				last, lastChange = res.Delivered, now
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if now.Sub(lastChange) > w.Stall {
			werr = fmt.Errorf("delivery stalled at %d of %d for %s", res.Delivered, res.Accepted, w.Stall)
			if err != nil {
				werr = fmt.Errorf("%w (last count error: %v)", werr, err)
			}
			break
		}
		if now.After(deadline) {
			werr = fmt.Errorf("gave up after %s at %d of %d delivered", w.Settle, res.Delivered, res.Accepted)
			break
		}
		time.Sleep(w.Poll)
	}
	res.DeliverS = max(time.Since(res.Start).Seconds(), res.AcceptS)
	if res.DeliverS > 0 {
		res.DeliverMPS = float64(res.Delivered) / res.DeliverS
	}
	if werr != nil {
		res.Note = werr.Error()
		return werr
	}
	if w.Queue == nil {
		return nil
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		d, err := w.Queue(cctx)
		cancel()
		if err == nil && d == 0 {
			res.DrainS = time.Since(res.Start).Seconds()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			res.Note = fmt.Sprintf("queue not empty after %s (depth %d, err %v)", w.Settle, d, err)
			return errors.New(res.Note)
		}
		time.Sleep(w.Poll)
	}
}
