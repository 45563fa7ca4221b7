package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"clustermail/api"
	"clustermail/cluster"
	"clustermail/directory"
	"clustermail/mailrpc"
	"clustermail/peer"
	"clustermail/raftstore"
)

// apiHandler is the admin HTTP API. The same handler also serves requests
// other nodes forward over the cluster port.
func (n *Node) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health/live", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "alive"}) })
	mux.HandleFunc("GET /v1/health/ready", n.handleReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	// Profiles under load, for performance work (go tool pprof URL).
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)

	mux.HandleFunc("GET /v1/cluster/members", n.handleMembers)
	mux.HandleFunc("GET /v1/cluster/status", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, n.status()) })
	mux.HandleFunc("POST /v1/cluster/leave", n.handleLeave)
	mux.HandleFunc("POST /v1/cluster/remove-peer", n.onLeader(n.handleRemovePeer))
	mux.HandleFunc("POST /v1/cluster/transfer-leader", n.onLeader(n.handleTransferLeader))
	mux.HandleFunc("GET /v1/cluster/snapshot", n.onLeader(n.handleSnapshotSave))
	mux.HandleFunc("POST /v1/cluster/snapshot/restore", n.onLeader(n.handleSnapshotRestore))

	mux.HandleFunc("GET /v1/domains", n.handleDomains)
	mux.HandleFunc("POST /v1/domains", n.handleAddDomain)
	mux.HandleFunc("DELETE /v1/domains/{domain}", n.handleRemoveDomain)
	mux.HandleFunc("GET /v1/users", n.handleUsers)
	mux.HandleFunc("POST /v1/users", n.handleAddUser)
	mux.HandleFunc("GET /v1/users/{address}", n.handleUser)
	mux.HandleFunc("DELETE /v1/users/{address}", n.handleRemoveUser)
	mux.HandleFunc("POST /v1/users/{address}/password", n.handlePassword)
	mux.HandleFunc("GET /v1/aliases", n.handleAliases)
	mux.HandleFunc("POST /v1/aliases", n.handleAddAlias)
	mux.HandleFunc("DELETE /v1/aliases/{alias}", n.handleRemoveAlias)
	mux.HandleFunc("GET /v1/mailboxes/{address}/messages", n.onOwner(n.handleMessages))
	mux.HandleFunc("GET /v1/mailboxes/{address}/messages/{uid}", n.onOwner(n.handleRawMessage))
	mux.HandleFunc("GET /v1/mailboxes/{address}/stats", n.onOwner(n.handleMailboxStats))
	mux.HandleFunc("GET /v1/mailboxes/{address}/export", n.onOwner(n.handleMailboxExport))
	mux.HandleFunc("POST /v1/mailboxes/{address}/import", n.onOwner(n.handleMailboxImport))
	n.registerQueueAPI(mux)
	n.registerKeyringAPI(mux)
	n.registerDKIMAPI(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return n.requireToken(mux)
}

// internalHandler serves the cluster port's RPC: Raft forwarding, bodies,
// and the admin API for requests forwarded between nodes.
func (n *Node) internalHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/internal/", n.cluster.Handler())
	mux.Handle("/internal/spool/", n.router.Handler())
	mux.Handle(mailrpc.Prefix, mailrpc.Handler(n.mail, n.log))
	mux.Handle("/v1/", n.apiHandler())
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, api.ErrorBody{Error: err.Error()})
}

// writeCmdErr maps a write's error to an HTTP status.
func writeCmdErr(w http.ResponseWriter, err error) {
	var ce *raftstore.CommandError
	switch {
	case errors.As(err, &ce) && ce.Code == raftstore.CodeNotFound:
		writeErr(w, http.StatusNotFound, err)
	case errors.As(err, &ce) && ce.Code == raftstore.CodeConflict:
		writeErr(w, http.StatusConflict, err)
	case errors.As(err, &ce):
		writeErr(w, http.StatusBadRequest, err)
	case errors.Is(err, cluster.ErrNoLeader):
		writeErr(w, http.StatusServiceUnavailable, err)
	default:
		writeErr(w, http.StatusInternalServerError, err)
	}
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("bad request body: %w", err))
		return false
	}
	return true
}

func reqCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 15*time.Second)
}

func (n *Node) handleReady(w http.ResponseWriter, _ *http.Request) {
	if why := n.cluster.Ready(n.fsm.AppliedIndex()); why != "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": why})
		return
	}
	writeJSON(w, 200, map[string]string{"status": "ready"})
}

// forward sends the request to another node's cluster port, which serves
// it with this same handler.
func (n *Node) forward(w http.ResponseWriter, r *http.Request, clusterAddr string, unreachable func(error) error) {
	if r.Header.Get(peer.ForwardedHeader) != "" {
		writeErr(w, http.StatusServiceUnavailable, errors.New("forwarding loop: the target node cannot serve this either"))
		return
	}
	target := &url.URL{Scheme: "http", Host: clusterAddr}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = n.rpc.Transport
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		writeErr(w, http.StatusServiceUnavailable, unreachable(err))
	}
	r.Header.Set(peer.ForwardedHeader, n.cfg.Name)
	rp.ServeHTTP(w, r)
}

// onLeader runs h on the leader, forwarding when this node is not.
func (n *Node) onLeader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if n.cluster.IsLeader() {
			h(w, r)
			return
		}
		addr := n.cluster.LeaderAddr()
		if addr == "" {
			writeErr(w, http.StatusServiceUnavailable, cluster.ErrNoLeader)
			return
		}
		n.forward(w, r, addr, func(err error) error {
			return fmt.Errorf("cannot reach the leader at %s: %w", addr, err)
		})
	}
}

// onOwner runs h on the node that owns the mailbox of {address}.
func (n *Node) onOwner(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		addr := r.PathValue("address")
		acc, ok, err := n.dir.Account(addr)
		if err != nil {
			writeErr(w, 500, err)
			return
		}
		if !ok {
			writeErr(w, 404, fmt.Errorf("account %s does not exist", directory.Normalize(addr)))
			return
		}
		if acc.Node == n.cfg.Name {
			h(w, r)
			return
		}
		down := func(err error) error {
			return fmt.Errorf("the mailbox of %s is on node %s, which is down (%v); try again when it is back", acc.Address, acc.Node, err)
		}
		m, ok := n.cluster.Node(acc.Node)
		if !ok || m.State != cluster.StateAlive {
			writeErr(w, http.StatusServiceUnavailable, down(errors.New("gossip: "+m.State)))
			return
		}
		n.forward(w, r, m.Meta.RaftAddr, down)
	}
}

func (n *Node) handleMembers(w http.ResponseWriter, _ *http.Request) {
	out := []api.Member{}
	for _, m := range n.cluster.Members() {
		out = append(out, api.Member{Name: m.Name, ID: m.Meta.ID, GossipAddr: m.Addr, RaftAddr: m.Meta.RaftAddr,
			APIAddr: m.Meta.APIAddr, SMTPAddr: m.Meta.SMTPAddr, GossipState: m.State, RaftRole: m.RaftRole,
			Suffrage: m.Suffrage, Version: m.Meta.Version})
	}
	writeJSON(w, 200, out)
}

func (n *Node) status() api.Status {
	s := n.cluster.Status()
	return api.Status{Node: s.Node, State: s.State, Leader: s.Leader, LeaderAddr: s.LeaderAddr, Term: s.Term,
		CommitIndex: s.CommitIndex, AppliedIndex: s.AppliedIndex, LastLogIndex: s.LastIndex, Voters: s.Voters, NonVoters: s.NonVoters}
}

func (n *Node) handleLeave(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusAccepted, n.status())
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	select {
	case n.leaveReq <- struct{}{}:
	default:
	}
}

func (n *Node) handleRemovePeer(w http.ResponseWriter, r *http.Request) {
	var req api.NameRequest
	if !readJSON(w, r, &req) {
		return
	}
	if strings.TrimSpace(req.Name) == "" {
		writeErr(w, 400, errors.New("name the node to remove"))
		return
	}
	if err := n.cluster.RemovePeer(req.Name); err != nil {
		writeErr(w, http.StatusConflict, fmt.Errorf("remove %s: %w", req.Name, err))
		return
	}
	writeJSON(w, 200, n.status())
}

func (n *Node) handleTransferLeader(w http.ResponseWriter, r *http.Request) {
	var req api.NameRequest
	if !readJSON(w, r, &req) {
		return
	}
	if err := n.cluster.TransferLeader(req.Name); err != nil {
		writeErr(w, http.StatusConflict, fmt.Errorf("transfer leadership: %w", err))
		return
	}
	// Report the outcome once a leader is known again.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && (n.cluster.LeaderAddr() == "" || n.cluster.IsLeader() && req.Name != n.cfg.Name) {
		time.Sleep(50 * time.Millisecond)
	}
	writeJSON(w, 200, n.status())
}
