package routing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// orphanAge is how old a body must be, with no queue entry, before the
// sweeper drops it: far longer than an entry takes to commit.
const orphanAge = 10 * time.Minute

// sweepLoop drops bodies whose entry is gone: at once for entries this node
// saw finish, and periodically for everything else (a failed accept, a
// missed notification).
func (r *Router) sweepLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-r.queue.Removed():
			if r.spool.Has(id) {
				if err := r.spool.Delete(id); err != nil {
					r.log.Warn("drop delivered body", "queue_id", id, "err", err)
				}
			}
		case <-t.C:
			r.m.loops.WithLabelValues("sweep").Inc()
			r.sweep()
		}
	}
}

func (r *Router) sweep() {
	// A replica that is behind might not know an entry yet; deleting its
	// body then would lose a copy the queue counts on.
	if why := r.members.Ready(r.applied()); why != "" {
		return
	}
	cutoff := time.Now().Add(-orphanAge)
	var orphans []string
	_ = r.spool.List(func(id string, stored time.Time, _ int64) bool {
		if stored.Before(cutoff) && !r.queue.Has(id) {
			orphans = append(orphans, id)
		}
		return true
	})
	for _, id := range orphans {
		if err := r.spool.Delete(id); err == nil {
			r.log.Info("dropped orphan body", "queue_id", id)
		}
	}
}

// Handler serves the internal RPC endpoints for bodies: other nodes put
// a body here as a holder, or fetch one to deliver.
func (r *Router) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /internal/spool/{id}", func(w http.ResponseWriter, req *http.Request) {
		id := req.PathValue("id")
		if err := r.Room(req.ContentLength); err != nil {
			http.Error(w, err.Error(), http.StatusInsufficientStorage)
			return
		}
		body, err := readBody(req.Body, req.ContentLength)
		if err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		if err := r.spool.Put(id, body); err != nil {
			r.log.Error("store body for another node", "queue_id", id, "err", err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /internal/spool/{id}", func(w http.ResponseWriter, req *http.Request) {
		b, err := r.spool.Get(req.PathValue("id"))
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, errNotFound) || !r.spool.Has(req.PathValue("id")) {
				code = http.StatusNotFound
			}
			http.Error(w, err.Error(), code)
			return
		}
		_, _ = w.Write(b)
	})
	return mux
}

// maxBody bounds a body received from another node.
const maxBody = 256 << 20

// readBody reads a body of at most maxBody bytes. With its length known,
// into one buffer of that size: no regrowing, and the HTTP server's reader
// hands the bytes over in large reads instead of its 4 KiB pieces.
func readBody(r io.Reader, length int64) ([]byte, error) {
	if length > maxBody {
		return nil, fmt.Errorf("body of %d bytes: over %d", length, maxBody)
	}
	if length < 0 {
		b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
		if err == nil && len(b) > maxBody {
			err = fmt.Errorf("body over %d bytes", maxBody)
		}
		return b, err
	}
	b := make([]byte, length)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

var errNotFound = errors.New("not found")
