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
		var err error
		if c.groupable() {
			err = c.group.propose(ctx, cmd)
		} else {
			err = c.applyOnce(ctx, cmd, raftstore.ReadsBack(ctx))
		}
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

// groupable reports whether commands may be grouped into multi entries:
// only once every node of the cluster reads them.
func (c *Cluster) groupable() bool {
	servers := c.raft.GetConfiguration().Configuration().Servers
	ids := make([]string, len(servers))
	for i, s := range servers {
		ids[i] = string(s.ID)
	}
	return c.table.allHave(featureMulti, ids)
}

// applyOnce commits one command and, when the proposer reads it back,
// waits until this replica has applied it, so that a read here right after
// it sees it (read-your-writes on the proposing node).
func (c *Cluster) applyOnce(ctx context.Context, cmd []byte, readBack bool) error {
	index, outcomes, err := c.commit(ctx, cmd)
	if err != nil {
		return err
	}
	if readBack {
		c.waitApplied(ctx, index)
	}
	return outcomes[0]
}

// commit commits an entry, here on the leader or forwarded to it, and
// returns its index and the outcome of each command in it: one for a plain
// command, one per command for a multi entry. err is set when the entry
// did not (certainly) commit.
func (c *Cluster) commit(ctx context.Context, cmd []byte) (uint64, []error, error) {
	if c.raft.State() == raft.Leader {
		index, resp, err := c.commitLocal(ctx, cmd)
		return index, outcomes(resp), err
	}
	addr, _ := c.raft.LeaderWithID()
	if addr == "" {
		return 0, nil, errRetry{errors.New("no leader known")}
	}
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+string(addr)+"/internal/apply", bytes.NewReader(cmd))
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.rpc.Do(req)
	if err != nil {
		return 0, nil, errRetry{fmt.Errorf("forward to leader %s: %w", addr, err)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusServiceUnavailable {
		return 0, nil, errRetry{fmt.Errorf("leader %s: %s", addr, bytes.TrimSpace(body))}
	}
	if resp.StatusCode != http.StatusOK {
		return 0, nil, fmt.Errorf("leader %s: %s: %s", addr, resp.Status, bytes.TrimSpace(body))
	}
	var a applyAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return 0, nil, fmt.Errorf("leader %s: bad answer: %w", addr, err)
	}
	return a.Index, a.outcomes(), nil
}

// outcomes is one outcome per command of the answered entry.
func (a applyAnswer) outcomes() []error {
	ces := a.Errors
	if ces == nil {
		ces = []*raftstore.CommandError{a.Error}
	}
	out := make([]error, len(ces))
	for i, ce := range ces {
		if ce != nil { // a nil *CommandError in an error would not be nil
			out[i] = ce
		}
	}
	return out
}

// outcomes turns the state machine's answer to an entry into one outcome
// per command.
func outcomes(resp any) []error {
	switch v := resp.(type) {
	case raftstore.MultiResponse:
		return v
	case error:
		return []error{v}
	}
	return []error{nil}
}

func (c *Cluster) commitLocal(ctx context.Context, cmd []byte) (uint64, any, error) {
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = max(time.Until(d), time.Millisecond)
	}
	f := c.raft.Apply(cmd, timeout)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
			errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			return 0, nil, errRetry{err}
		}
		return 0, nil, fmt.Errorf("raft apply: %w", err)
	}
	return f.Index(), f.Response(), nil
}

// applyAnswer is the leader's answer to a forwarded entry: Error for a
// command, Errors (one per command, null for success) for a multi entry.
type applyAnswer struct {
	Index  uint64                    `json:"index"`
	Error  *raftstore.CommandError   `json:"error,omitempty"`
	Errors []*raftstore.CommandError `json:"errors,omitempty"`
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
	index, resp, err := c.commitLocal(r.Context(), cmd)
	var r2 errRetry
	switch {
	case errors.As(err, &r2):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_ = json.NewEncoder(w).Encode(answer(index, resp))
}

// answer is what the leader tells the proposer of a forwarded entry: the
// outcome of a plain command in Error, those of a multi entry in Errors.
func answer(index uint64, resp any) applyAnswer {
	a := applyAnswer{Index: index}
	out := outcomes(resp)
	if _, multi := resp.(raftstore.MultiResponse); !multi {
		a.Error = commandError(out[0])
		return a
	}
	a.Errors = make([]*raftstore.CommandError, len(out))
	for i, e := range out {
		a.Errors[i] = commandError(e)
	}
	return a
}

// commandError is err as it crosses to the proposer. Handlers return only
// business errors; anything else is carried as one without a code rather
// than lost.
func commandError(err error) *raftstore.CommandError {
	if err == nil {
		return nil
	}
	var ce *raftstore.CommandError
	if errors.As(err, &ce) {
		return ce
	}
	return &raftstore.CommandError{Message: err.Error()}
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
