package node

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/mail"
	"strconv"
	"strings"

	"clustermail/api"
	"clustermail/directory"
	"clustermail/mailstore"
)

func (n *Node) handleDomains(w http.ResponseWriter, _ *http.Request) {
	ds, err := n.dir.Domains()
	if err != nil {
		writeErr(w, 500, err)
		return
	}
	out := []api.Domain{}
	for _, d := range ds {
		out = append(out, api.Domain{Name: d.Name, Created: d.Created})
	}
	writeJSON(w, 200, out)
}

func (n *Node) handleAddDomain(w http.ResponseWriter, r *http.Request) {
	var req api.Domain
	if !readJSON(w, r, &req) {
		return
	}
	ctx, cancel := reqCtx(r)
	defer cancel()
	d, err := n.dir.AddDomain(ctx, req.Name)
	if err != nil {
		writeCmdErr(w, err)
		return
	}
	writeJSON(w, 201, api.Domain{Name: d.Name, Created: d.Created})
}

func (n *Node) handleRemoveDomain(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := reqCtx(r)
	defer cancel()
	if err := n.dir.RemoveDomain(ctx, r.PathValue("domain")); err != nil {
		writeCmdErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func userOf(a directory.Account) api.User {
	return api.User{Address: a.Address, Node: a.Node, Quota: a.Quota, Created: a.Created}
}

func (n *Node) handleUsers(w http.ResponseWriter, r *http.Request) {
	accs, err := n.dir.Accounts(r.URL.Query().Get("domain"))
	if err != nil {
		writeErr(w, 500, err)
		return
	}
	out := []api.User{}
	for _, a := range accs {
		out = append(out, userOf(a))
	}
	writeJSON(w, 200, out)
}

func (n *Node) handleUser(w http.ResponseWriter, r *http.Request) {
	a, ok, err := n.dir.Account(r.PathValue("address"))
	switch {
	case err != nil:
		writeErr(w, 500, err)
	case !ok:
		writeErr(w, 404, fmt.Errorf("account %s does not exist", directory.Normalize(r.PathValue("address"))))
	default:
		writeJSON(w, 200, userOf(a))
	}
}

func (n *Node) handleAddUser(w http.ResponseWriter, r *http.Request) {
	var req api.UserAddRequest
	if !readJSON(w, r, &req) {
		return
	}
	node := req.Node
	if node == "" {
		// Rendezvous hashing over the nodes alive now; the state machine
		// only records the choice.
		var live []string
		for _, m := range n.cluster.LiveNodes() {
			live = append(live, m.Name)
		}
		node = directory.Place(req.Address, live)
	} else if _, ok := n.cluster.Node(node); !ok {
		writeErr(w, 400, fmt.Errorf("no node named %s in the cluster", node))
		return
	}
	ctx, cancel := reqCtx(r)
	defer cancel()
	a, err := n.dir.AddAccount(ctx, directory.NewAccount{Address: req.Address, Password: req.Password, Quota: req.Quota, Node: node})
	if err != nil {
		writeCmdErr(w, err)
		return
	}
	writeJSON(w, 201, userOf(a))
}

func (n *Node) handlePassword(w http.ResponseWriter, r *http.Request) {
	var req api.PasswordRequest
	if !readJSON(w, r, &req) {
		return
	}
	ctx, cancel := reqCtx(r)
	defer cancel()
	if err := n.dir.SetPassword(ctx, r.PathValue("address"), req.Password); err != nil {
		writeCmdErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (n *Node) handleRemoveUser(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := reqCtx(r)
	defer cancel()
	if err := n.dir.RemoveAccount(ctx, r.PathValue("address")); err != nil {
		writeCmdErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (n *Node) handleAliases(w http.ResponseWriter, _ *http.Request) {
	as, err := n.dir.Aliases()
	if err != nil {
		writeErr(w, 500, err)
		return
	}
	out := []api.Alias{}
	for _, a := range as {
		out = append(out, api.Alias{Alias: a.Alias, Targets: a.Targets})
	}
	writeJSON(w, 200, out)
}

func (n *Node) handleAddAlias(w http.ResponseWriter, r *http.Request) {
	var req api.Alias
	if !readJSON(w, r, &req) {
		return
	}
	ctx, cancel := reqCtx(r)
	defer cancel()
	a, err := n.dir.SetAlias(ctx, req.Alias, req.Targets)
	if err != nil {
		writeCmdErr(w, err)
		return
	}
	writeJSON(w, 201, api.Alias{Alias: a.Alias, Targets: a.Targets})
}

func (n *Node) handleRemoveAlias(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := reqCtx(r)
	defer cancel()
	if err := n.dir.RemoveAlias(ctx, r.PathValue("alias")); err != nil {
		writeCmdErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (n *Node) handleMessages(w http.ResponseWriter, r *http.Request) {
	addr := directory.Normalize(r.PathValue("address"))
	msgs, err := n.mail.Messages(addr, "INBOX")
	if errors.Is(err, mailstore.ErrNoMailbox) {
		writeJSON(w, 200, []api.MessageSummary{})
		return
	}
	if err != nil {
		writeErr(w, 500, err)
		return
	}
	out := []api.MessageSummary{}
	for _, m := range msgs {
		s := api.MessageSummary{UID: m.UID, Date: m.InternalDate, Size: m.Size, Flags: m.Flags}
		if body, err := n.mail.Body(addr, "INBOX", m.UID); err == nil {
			s.From, s.Subject = summaryHeaders(body)
		}
		out = append(out, s)
	}
	writeJSON(w, 200, out)
}

func (n *Node) handleRawMessage(w http.ResponseWriter, r *http.Request) {
	addr := directory.Normalize(r.PathValue("address"))
	uid, err := strconv.ParseUint(r.PathValue("uid"), 10, 32)
	if err != nil {
		writeErr(w, 400, fmt.Errorf("bad uid %q", r.PathValue("uid")))
		return
	}
	body, err := n.mail.Body(addr, "INBOX", uint32(uid))
	if errors.Is(err, mailstore.ErrNoMessage) || errors.Is(err, mailstore.ErrNoMailbox) {
		writeErr(w, 404, fmt.Errorf("no message %d in the INBOX of %s", uid, addr))
		return
	}
	if err != nil {
		writeErr(w, 500, err)
		return
	}
	w.Header().Set("Content-Type", "message/rfc822")
	_, _ = w.Write(body)
}

// summaryHeaders reads From and Subject for a listing, decoding RFC 2047
// words; a message with broken headers still lists, with what was readable.
func summaryHeaders(body []byte) (from, subject string) {
	m, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(body)))
	if err != nil {
		return "", ""
	}
	dec := new(mime.WordDecoder)
	get := func(k string) string {
		v := m.Header.Get(k)
		if d, err := dec.DecodeHeader(v); err == nil {
			v = d
		}
		return strings.TrimSpace(v)
	}
	return get("From"), get("Subject")
}

func (n *Node) handleMailboxStats(w http.ResponseWriter, r *http.Request) {
	addr := directory.Normalize(r.PathValue("address"))
	acc, _, _ := n.dir.Account(addr)
	out := api.MailboxStats{Address: addr, Node: acc.Node, Quota: acc.Quota, Folders: []api.FolderStats{}}
	if err := n.mail.EnsureAccount(addr); err != nil {
		writeErr(w, 500, err)
		return
	}
	boxes, err := n.mail.Mailboxes(addr)
	if err != nil {
		writeErr(w, 500, err)
		return
	}
	for _, b := range boxes {
		out.Folders = append(out.Folders, api.FolderStats{Name: b.Name, SpecialUse: b.SpecialUse, Messages: b.Messages, Unseen: b.Unseen, Bytes: b.Bytes})
	}
	if out.Messages, out.Bytes, err = n.mail.Usage(addr); err != nil {
		writeErr(w, 500, err)
		return
	}
	writeJSON(w, 200, out)
}
