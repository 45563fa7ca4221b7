package node

import (
	"errors"
	"fmt"
	"net/http"
	"sort"

	"clustermail/api"
	"clustermail/queue"
	"clustermail/routing"
)

func (n *Node) registerQueueAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/queue", n.handleQueue)
	mux.HandleFunc("GET /v1/queue/{id}", n.handleQueueEntry)
	mux.HandleFunc("POST /v1/queue/retry", n.handleQueueRetry)
	mux.HandleFunc("DELETE /v1/queue/{id}", n.handleQueueDelete)
	mux.HandleFunc("POST /v1/queue/{id}/bounce", n.handleQueueBounce)
}

func (n *Node) handleQueue(w http.ResponseWriter, _ *http.Request) {
	out := []api.QueueSummary{}
	err := n.queue.List(func(e queue.Entry) bool {
		s := api.QueueSummary{ID: e.ID, From: e.From, Created: e.Created, Size: e.Size, Pending: e.Pending(), Recipients: len(e.Recipients)}
		nodes := map[string]bool{}
		for _, r := range e.Recipients {
			if r.Final() {
				continue
			}
			nodes[r.Node] = true
			if s.NextAttempt.IsZero() || r.NextAttempt.Before(s.NextAttempt) {
				s.NextAttempt = r.NextAttempt
			}
		}
		for nd := range nodes {
			s.Nodes = append(s.Nodes, nd)
		}
		sort.Strings(s.Nodes)
		out = append(out, s)
		return true
	})
	if err != nil {
		writeErr(w, 500, err)
		return
	}
	writeJSON(w, 200, out)
}

func (n *Node) handleQueueEntry(w http.ResponseWriter, r *http.Request) {
	e, ok, err := n.queue.Get(r.PathValue("id"))
	switch {
	case err != nil:
		writeErr(w, 500, err)
		return
	case !ok:
		writeErr(w, 404, fmt.Errorf("no queue entry %s (delivered, bounced or deleted)", r.PathValue("id")))
		return
	}
	out := api.QueueEntry{ID: e.ID, From: e.From, Created: e.Created, Size: e.Size, Node: e.Node, Holders: e.Holders,
		DelayNotified: e.DelayNotified}
	for _, rc := range e.Recipients {
		out.Recipients = append(out.Recipients, api.QueueRecipient{Addr: rc.Addr, Orig: rc.Orig, Node: rc.Node, Remote: rc.Remote,
			State: rc.State, Attempts: rc.Attempts, LastReply: rc.LastReply, NextAttempt: rc.NextAttempt})
	}
	writeJSON(w, 200, out)
}

func (n *Node) handleQueueRetry(w http.ResponseWriter, r *http.Request) {
	var req api.RetryRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.All == (len(req.IDs) > 0) {
		writeErr(w, 400, errors.New("name queue ids, or ask for all, not both"))
		return
	}
	ctx, cancel := reqCtx(r)
	defer cancel()
	if err := n.queue.RetryNow(ctx, req.IDs...); err != nil {
		writeCmdErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (n *Node) handleQueueDelete(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := reqCtx(r)
	defer cancel()
	if err := n.queue.Delete(ctx, r.PathValue("id")); err != nil {
		writeCmdErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (n *Node) handleQueueBounce(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := reqCtx(r)
	defer cancel()
	err := n.router.Bounce(ctx, r.PathValue("id"))
	if errors.Is(err, routing.ErrNoEntry) {
		writeErr(w, 404, err)
		return
	}
	if err != nil {
		writeCmdErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
