package node

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"clustermail/api"
	"clustermail/directory"
	"clustermail/signing"
)

func (n *Node) registerDKIMAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/dkim", n.handleDKIMKeys)
	mux.HandleFunc("GET /v1/dkim/{domain}", n.handleDKIMKeys)
	mux.HandleFunc("POST /v1/dkim", n.handleGenerateDKIMKey)
	mux.HandleFunc("DELETE /v1/dkim/{domain}/{selector}", n.handleRemoveDKIMKey)
}

// dkimView is the public face of a key. A key whose record cannot be made
// is shown with the error in place of the record rather than hidden.
func dkimView(k directory.DKIMKey, active bool) api.DKIMKey {
	v := api.DKIMKey{Domain: k.Domain, Selector: k.Selector, Algorithm: k.Algorithm, Created: k.Created, Active: active,
		DNSName: signing.RecordName(k.Domain, k.Selector)}
	rec, err := signing.Record(k)
	if err != nil {
		rec = "error: " + err.Error()
	}
	v.DNSValue = rec
	return v
}

func (n *Node) handleDKIMKeys(w http.ResponseWriter, r *http.Request) {
	ks, err := n.dir.DKIMKeys(r.PathValue("domain"))
	if err != nil {
		writeErr(w, 500, err)
		return
	}
	out := []api.DKIMKey{}
	signs := map[string]bool{} // domain and algorithm that have their signing key
	for _, k := range ks {
		id := k.Domain + " " + k.Algorithm
		out = append(out, dkimView(k, !signs[id]))
		signs[id] = true
	}
	writeJSON(w, 200, out)
}

func (n *Node) handleGenerateDKIMKey(w http.ResponseWriter, r *http.Request) {
	var req api.DKIMGenerateRequest
	if !readJSON(w, r, &req) {
		return
	}
	alg := strings.ToLower(req.Algorithm)
	if alg == "" {
		alg = directory.AlgRSA
	}
	if alg != directory.AlgRSA && alg != directory.AlgEd25519 {
		writeErr(w, 400, fmt.Errorf("unknown DKIM algorithm %q: use %s or %s", req.Algorithm, directory.AlgRSA, directory.AlgEd25519))
		return
	}
	domain := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(req.Domain), "."))
	// Whether the domain is hosted is checked where the command applies,
	// not on this replica, which may not have seen a domain just added.
	sel := req.Selector
	if sel == "" {
		sel = alg + "-" + time.Now().UTC().Format("20060102")
	}
	p, err := signing.GenerateKey(alg)
	if err != nil {
		writeErr(w, 500, err)
		return
	}
	ctx, cancel := reqCtx(r)
	defer cancel()
	k, err := n.dir.AddDKIMKey(ctx, directory.DKIMKey{Domain: domain, Selector: sel, Algorithm: alg, PrivateKey: p})
	if err != nil {
		writeCmdErr(w, err)
		return
	}
	active := true
	if ks, err := n.dir.DKIMKeys(domain); err == nil {
		for _, o := range ks {
			if o.Algorithm == alg && o.Selector != k.Selector && !o.Created.After(k.Created) {
				active = false
			}
		}
	}
	writeJSON(w, 201, dkimView(k, active))
}

func (n *Node) handleRemoveDKIMKey(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := reqCtx(r)
	defer cancel()
	if err := n.dir.RemoveDKIMKey(ctx, r.PathValue("domain"), r.PathValue("selector")); err != nil {
		writeCmdErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
