package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"clustermail/api"
	"clustermail/backup"
	"clustermail/raftstore"
)

// Snapshot save and restore: the Raft state (directory and queue) as a
// file. Message bodies, queued or in mailboxes, live in each node's local
// stores and are not part of it.

// cmdBackupMark is a command that changes no state: it marks a restore in
// the log (or gives Raft something to snapshot, see takeSnapshot). Applying it moves
// every node's applied index past the restored snapshot, which a restore
// alone does not do: the restored state carries the applied index it was
// taken at, and readiness ("catching up") and read-your-writes compare
// that index with the log's. IgnoreUnknown lets a node of an older
// version skip it during a rolling upgrade.
const cmdBackupMark = raftstore.IgnoreUnknown | 40

// restoreTimeout bounds raft.Restore: handing the state to the FSM and
// waiting until the followers have installed it.
const restoreTimeout = 5 * time.Minute

// backupMark is the payload of cmdBackupMark.
type backupMark struct {
	Event string `json:"event"`           // markRestored or markSnapshot
	Index uint64 `json:"index,omitempty"` // the restored snapshot's index
	Node  string `json:"node,omitempty"`  // the leader that did it
}

const (
	markRestored = "restored"
	markSnapshot = "snapshot"
)

// registerBackupCommands registers cmdBackupMark. It must run before Raft
// starts, like every handler.
func registerBackupCommands(f *raftstore.FSM, log *slog.Logger) {
	f.Register(cmdBackupMark, func(_ *raftstore.Tx, payload []byte) error {
		var m backupMark
		raftstore.Decode(payload, &m)
		if m.Event == markRestored {
			log.Warn("the replicated state (directory and queue) was replaced by a restored snapshot",
				"snapshot_index", m.Index, "by", m.Node)
		}
		return nil
	})
}

func (n *Node) applyBackupMark(ctx context.Context, m backupMark) error {
	cmd, err := raftstore.Encode(cmdBackupMark, m)
	if err != nil {
		return err
	}
	return n.cluster.Apply(ctx, cmd)
}

// handleSnapshotSave streams a snapshot file of the current state. It runs
// on the leader, whose state is the most recent.
func (n *Node) handleSnapshotSave(w http.ResponseWriter, r *http.Request) {
	meta, rc, err := n.takeSnapshot(r.Context())
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err)
		return
	}
	defer rc.Close()
	h := backup.SnapshotHeader{Index: meta.Index, Term: meta.Term, RaftVersion: int(meta.Version), Size: meta.Size,
		Created: time.Now().UTC(), Node: n.cfg.Name, Version: Version}
	size, err := backup.SnapshotFileSize(h)
	if err != nil {
		writeErr(w, 500, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="clustermail-%d.snapshot"`, meta.Index))
	n.log.Info("streaming a snapshot", "index", meta.Index, "term", meta.Term, "bytes", meta.Size)
	if _, err := backup.WriteSnapshot(w, h, rc); err != nil {
		n.log.Warn("snapshot save stopped", "index", meta.Index, "err", err)
		// Cut the connection: the client must see a failure, not a short
		// file (the checksum would catch it, but later).
		panic(http.ErrAbortHandler)
	}
}

// takeSnapshot makes Raft take a snapshot and opens it. Raft refuses while
// its FSM has applied nothing since the node started (a restarted node
// whose state was already current skips the replay); a no-op entry then
// gives it something to take.
func (n *Node) takeSnapshot(ctx context.Context) (*raft.SnapshotMeta, io.ReadCloser, error) {
	for attempt := 0; ; attempt++ {
		f := n.cluster.Raft().Snapshot()
		err := f.Error()
		if errors.Is(err, raft.ErrNothingNewToSnapshot) && attempt < 3 {
			n.log.Debug("raft has applied nothing since the start; committing a no-op entry to snapshot")
			if err := n.applyBackupMark(ctx, backupMark{Event: markSnapshot, Node: n.cfg.Name}); err != nil {
				return nil, nil, fmt.Errorf("take a snapshot: %w", err)
			}
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("take a snapshot: %w", err)
		}
		meta, rc, err := f.Open()
		if err != nil {
			return nil, nil, fmt.Errorf("open the snapshot: %w", err)
		}
		return meta, rc, nil
	}
}

// handleSnapshotRestore replaces the replicated state with an uploaded
// snapshot file. The file is stored and checked in full first: Raft's
// leader loop reads the snapshot while it restores, and must neither wait
// for a slow client nor find the checksum wrong halfway (an FSM that fails
// to restore stops the leader).
func (n *Node) handleSnapshotRestore(w http.ResponseWriter, r *http.Request) {
	if !n.restoring.TryLock() {
		writeErr(w, http.StatusConflict, errors.New("a restore is already running on this node"))
		return
	}
	defer n.restoring.Unlock()

	sr, err := backup.ReadSnapshot(r.Body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("restore: %w", err))
		return
	}
	// An upload cut short by a crash leaves its file; only one restore
	// runs at a time, so any such file is stale.
	if stale, err := filepath.Glob(filepath.Join(n.cfg.DataDir, "restore-*.snapshot")); err == nil {
		for _, p := range stale {
			os.Remove(p)
		}
	}
	tmp, err := os.CreateTemp(n.cfg.DataDir, "restore-*.snapshot")
	if err != nil {
		writeErr(w, 500, fmt.Errorf("restore: spool the upload: %w", err))
		return
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	if _, err := io.Copy(tmp, sr); err != nil {
		code := http.StatusBadRequest
		var pe *os.PathError
		if errors.As(err, &pe) {
			code = 500 // our disk, not their file
		}
		writeErr(w, code, fmt.Errorf("restore: %w", err))
		return
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		writeErr(w, 500, fmt.Errorf("restore: %w", err))
		return
	}
	if !n.cluster.IsLeader() {
		writeErr(w, http.StatusServiceUnavailable, errors.New("restore: leadership moved during the upload; run the restore again"))
		return
	}
	h := sr.Header
	n.log.Warn("restoring a snapshot: the replicated state (directory and queue) is being replaced",
		"snapshot_index", h.Index, "snapshot_term", h.Term, "bytes", h.Size, "taken", h.Created, "taken_by", h.Node)
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersion(h.RaftVersion), Index: h.Index, Term: h.Term, Size: h.Size}
	if err := n.cluster.Raft().Restore(meta, tmp, restoreTimeout); err != nil {
		code := http.StatusConflict
		if errors.Is(err, raft.ErrEnqueueTimeout) {
			// The state may already be replaced and the followers slow.
			err = fmt.Errorf("%w (the state may have been restored: check \"cluster status\" and the logs)", err)
			code = http.StatusGatewayTimeout
		}
		writeErr(w, code, fmt.Errorf("restore: %w", err))
		return
	}
	logIndex := n.cluster.Raft().LastIndex()
	ctx, cancel := reqCtx(r)
	defer cancel()
	if err := n.applyBackupMark(ctx, backupMark{Event: markRestored, Index: h.Index, Node: n.cfg.Name}); err != nil {
		// The restore itself is done; the next write moves the applied
		// index on instead.
		n.log.Warn("mark the restore in the log", "err", err)
	}
	out := api.SnapshotInfoOf(h)
	out.RestoredBy, out.LogIndex = n.cfg.Name, logIndex
	writeJSON(w, 200, out)
}
