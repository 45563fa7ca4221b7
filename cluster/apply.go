package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"clustermail/raftstore"
)

// holdTimeout is how long a write waits for a leader when the caller's
// context sets no deadline (Nomad's RPCHoldTimeout).
const holdTimeout = 10 * time.Second

// ErrNoLeader means no write could be committed: there is no leader, or it
// could not be reached, for the whole hold time.
var ErrNoLeader = errors.New("no cluster leader: the write was not committed (is a majority of nodes up?)")

// errRetry marks failures after which trying again may succeed.
type errRetry struct{ err error }

func (e errRetry) Error() string { return e.err.Error() }
func (e errRetry) Unwrap() error { return e.err }

// Apply commits a command through Raft from any node: on the leader
// directly, elsewhere by forwarding it to the leader, retrying with jitter
// while there is none. Every command is idempotent, so a retry after an
// uncertain outcome (leadership lost mid-commit) is harmless. Business
// errors come back as *raftstore.CommandError.
func (c *Cluster) Apply(ctx context.Context, cmd []byte) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, holdTimeout)
		defer cancel()
	}
	wait := 20 * time.Millisecond
	for {
		err := c.applyOnce(ctx, cmd)
		var r errRetry
		if !errors.As(err, &r) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ErrNoLeader, r.err)
		case <-time.After(wait/2 + rand.N(wait)):
		}
		if wait < time.Second {
			wait *= 2
		}
	}
}

func (c *Cluster) applyOnce(ctx context.Context, cmd []byte) error {
	if c.raft.State() == raft.Leader {
		return c.applyLocal(ctx, cmd)
	}
	addr, _ := c.raft.LeaderWithID()
	if addr == "" {
		return errRetry{errors.New("no leader known")}
	}
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+string(addr)+"/internal/apply", bytes.NewReader(cmd))
	if err != nil {
		return err
	}
	resp, err := c.rpc.Do(req)
	if err != nil {
		return errRetry{fmt.Errorf("forward to leader %s: %w", addr, err)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusServiceUnavailable {
		return errRetry{fmt.Errorf("leader %s: %s", addr, bytes.TrimSpace(body))}
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("leader %s: %s: %s", addr, resp.Status, bytes.TrimSpace(body))
	}
	var a applyAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("leader %s: bad answer: %w", addr, err)
	}
	// Wait until this replica has applied the write, so that a read here
	// right after it sees it (read-your-writes on the proposing node).
	c.waitApplied(ctx, a.Index)
	if a.Error != nil {
		return a.Error
	}
	return nil
}

// waitApplied waits, briefly, until the local state reflects index. A
// follower a heartbeat behind catches up in milliseconds; one that does not
// is not worth failing a committed write for.
func (c *Cluster) waitApplied(ctx context.Context, index uint64) {
	deadline := time.Now().Add(2 * time.Second)
	for wait := 100 * time.Microsecond; c.applied() < index && time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(wait)
		wait = min(2*wait, 20*time.Millisecond)
	}
}

func (c *Cluster) applyLocal(ctx context.Context, cmd []byte) error {
	_, err := c.applyIndexed(ctx, cmd)
	return err
}

func (c *Cluster) applyIndexed(ctx context.Context, cmd []byte) (uint64, error) {
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = max(time.Until(d), time.Millisecond)
	}
	f := c.raft.Apply(cmd, timeout)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
			errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			return 0, errRetry{err}
		}
		return 0, fmt.Errorf("raft apply: %w", err)
	}
	if err, ok := f.Response().(error); ok && err != nil {
		return f.Index(), err
	}
	return f.Index(), nil
}

type applyAnswer struct {
	Index uint64                  `json:"index"`
	Error *raftstore.CommandError `json:"error,omitempty"`
}

// handleApply is the leader's end of a forwarded write.
func (c *Cluster) handleApply(w http.ResponseWriter, r *http.Request) {
	cmd, err := io.ReadAll(io.LimitReader(r.Body, raft.SuggestedMaxDataSize+1))
	if err != nil || len(cmd) == 0 || len(cmd) > raft.SuggestedMaxDataSize {
		http.Error(w, "bad command", http.StatusBadRequest)
		return
	}
	if c.raft.State() != raft.Leader {
		http.Error(w, "not the leader", http.StatusServiceUnavailable)
		return
	}
	index, err := c.applyIndexed(r.Context(), cmd)
	var r2 errRetry
	var ce *raftstore.CommandError
	switch {
	case err == nil:
		_ = json.NewEncoder(w).Encode(applyAnswer{Index: index})
	case errors.As(err, &r2):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	case errors.As(err, &ce):
		_ = json.NewEncoder(w).Encode(applyAnswer{Index: index, Error: ce})
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// Handler serves the cluster's internal RPC endpoints.
func (c *Cluster) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /internal/apply", c.handleApply)
	mux.HandleFunc("GET /internal/raft-peers", c.handleRaftPeers)
	mux.HandleFunc("POST /internal/leave/{id}", c.handleLeave)
	mux.HandleFunc("POST /internal/keyring", c.handleKeyring)
	return mux
}
