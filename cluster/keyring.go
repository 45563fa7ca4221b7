package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// KeyringFile is where a node keeps its gossip keys, in its data dir (as
// Consul keeps serf/local.keyring): a JSON array of base64 keys, the
// primary first. A restart keeps the keys installed at run time.
const KeyringFile = "gossip.keyring"

// Keyring operations, as the admin API and the CLI name them.
const (
	KeyringList    = "list"
	KeyringInstall = "install"
	KeyringUse     = "use"
	KeyringRemove  = "remove"
)

// ErrGossipPlaintext means a keyring operation reached a node whose gossip
// is not encrypted: memberlist cannot turn encryption on at run time.
var ErrGossipPlaintext = errors.New("gossip encryption is off on this node: start it with --gossip-key")

// DecodeGossipKey parses a base64 gossip key: 16, 24 or 32 bytes (AES-128,
// -192 or -256).
func DecodeGossipKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("gossip key: not base64: %w", err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("gossip key: %d bytes, want 16, 24 or 32 (clustermail keygen makes one)", len(k))
}

// openKeyring returns the node's gossip keyring: the one kept in dir if
// there is one, else one seeded with seed and saved; nil (gossip in clear)
// when there is neither. As in Consul, the kept keyring wins over seed,
// since seed may be stale after a rotation.
func openKeyring(dir string, seed []byte, log *slog.Logger) (*memberlist.Keyring, error) {
	p := filepath.Join(dir, KeyringFile)
	b, err := os.ReadFile(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if seed == nil {
			return nil, nil
		}
		kr, err := memberlist.NewKeyring(nil, seed)
		if err != nil {
			return nil, fmt.Errorf("gossip key: %w", err)
		}
		if err := saveKeyring(dir, kr); err != nil {
			return nil, err
		}
		return kr, nil
	case err != nil:
		return nil, fmt.Errorf("read the gossip keyring: %w", err)
	}
	var encoded []string
	if err := json.Unmarshal(b, &encoded); err != nil || len(encoded) == 0 {
		return nil, fmt.Errorf("%s is corrupt (want a JSON array of base64 keys): %v", p, err)
	}
	keys := make([][]byte, len(encoded))
	for i, s := range encoded {
		if keys[i], err = DecodeGossipKey(s); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	kr, err := memberlist.NewKeyring(keys, keys[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if seed != nil && !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, seed) }) {
		log.Warn("--gossip-key is not in the kept keyring, which wins; to start over with --gossip-key, delete the keyring file",
			"keyring", p)
	}
	return kr, nil
}

// saveKeyring writes the keyring, primary first, replacing the file
// atomically: a crash never leaves a node without its keys.
func saveKeyring(dir string, kr *memberlist.Keyring) error {
	keys := kr.GetKeys() // the primary comes first
	encoded := make([]string, len(keys))
	for i, k := range keys {
		encoded[i] = base64.StdEncoding.EncodeToString(k)
	}
	b, _ := json.Marshal(encoded)
	p := filepath.Join(dir, KeyringFile)
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("save the gossip keyring: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save the gossip keyring: %w", err)
	}
	// The rename is durable only once the directory is: a crash must not
	// bring back a keyring whose keys the cluster has since removed.
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("save the gossip keyring: %w", err)
		}
	}
	return nil
}

// KeyringState is one node's gossip keys.
type KeyringState struct {
	Node    string   `json:"node"`
	Primary string   `json:"primary,omitempty"`
	Keys    []string `json:"keys,omitempty"`
	Error   string   `json:"error,omitempty"`
}

type keyringRequest struct {
	Op  string `json:"op"`
	Key string `json:"key,omitempty"`
}

// KeyringLocal runs a keyring operation on this node only and returns its
// keys afterwards.
func (c *Cluster) KeyringLocal(op, key string) (KeyringState, error) {
	st := KeyringState{Node: c.cfg.Name}
	if c.keyring == nil {
		return st, ErrGossipPlaintext
	}
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	if op != KeyringList {
		k, err := DecodeGossipKey(key)
		if err != nil {
			return st, err
		}
		switch op {
		case KeyringInstall:
			err = c.keyring.AddKey(k)
		case KeyringUse:
			if !slices.ContainsFunc(c.keyring.GetKeys(), func(x []byte) bool { return bytes.Equal(x, k) }) {
				err = errors.New("the key is not installed here: install it on every node first")
			} else {
				err = c.keyring.UseKey(k)
			}
		case KeyringRemove:
			err = c.keyring.RemoveKey(k)
		default:
			return st, fmt.Errorf("unknown keyring operation %q", op)
		}
		if err != nil {
			return st, fmt.Errorf("keyring %s: %w", op, err)
		}
		if err := saveKeyring(c.cfg.DataDir, c.keyring); err != nil {
			return st, err
		}
		c.log.Info("gossip keyring changed", "op", op)
	}
	st.Primary = base64.StdEncoding.EncodeToString(c.keyring.GetPrimaryKey())
	for _, k := range c.keyring.GetKeys() {
		st.Keys = append(st.Keys, base64.StdEncoding.EncodeToString(k))
	}
	return st, nil
}

// KeyringAll runs a keyring operation on every node gossip knows of: on
// the live ones over the cluster port, in parallel; departed ones are
// skipped and dead ones reported as not reached (restart them with the new
// key, see the README). Results come in member order.
func (c *Cluster) KeyringAll(ctx context.Context, op, key string) []KeyringState {
	if op == KeyringUse {
		// Switching only some nodes to a key the others lack would split
		// gossip: the others could no longer read them. All or none.
		if states, ok := c.installedEverywhere(ctx, key); !ok {
			return states
		}
	}
	members := c.table.list()
	out := make([]KeyringState, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		switch {
		case m.Name == c.cfg.Name:
			st, err := c.KeyringLocal(op, key)
			if err != nil {
				st.Error = err.Error()
			}
			out[i] = st
		case m.State != StateAlive:
			out[i] = KeyringState{Node: m.Name, Error: notReached + m.State}
		default:
			wg.Add(1)
			go func() {
				defer wg.Done()
				out[i] = c.keyringRemote(ctx, m, op, key)
			}()
		}
	}
	wg.Wait()
	return slices.DeleteFunc(out, func(s KeyringState) bool {
		return s.Node == "" || s.Error == notReached+StateLeft
	})
}

func (c *Cluster) keyringRemote(ctx context.Context, m Member, op, key string) KeyringState {
	fail := func(err error) KeyringState { return KeyringState{Node: m.Name, Error: err.Error()} }
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	body, _ := json.Marshal(keyringRequest{Op: op, Key: key})
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+m.Meta.RaftAddr+"/internal/keyring", bytes.NewReader(body))
	if err != nil {
		return fail(err)
	}
	resp, err := c.rpc.Do(req)
	if err != nil {
		return fail(fmt.Errorf("not reached: %w", err))
	}
	defer resp.Body.Close()
	var st KeyringState
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return fail(fmt.Errorf("bad answer (%s): %w", resp.Status, err))
	}
	st.Node = m.Name
	return st
}

// handleKeyring is a node's end of KeyringAll.
func (c *Cluster) handleKeyring(w http.ResponseWriter, r *http.Request) {
	var req keyringRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		http.Error(w, "bad keyring request", http.StatusBadRequest)
		return
	}
	st, err := c.KeyringLocal(req.Op, req.Key)
	if err != nil {
		st.Error = err.Error()
	}
	_ = json.NewEncoder(w).Encode(st)
}

const notReached = "not reached: gossip says "

// installedEverywhere lists every node's keys and reports whether key is
// installed on all of them; if not, the states say, node by node, why the
// operation was refused.
func (c *Cluster) installedEverywhere(ctx context.Context, key string) ([]KeyringState, bool) {
	k, err := DecodeGossipKey(key)
	if err != nil {
		return []KeyringState{{Node: c.cfg.Name, Error: err.Error()}}, false
	}
	want := base64.StdEncoding.EncodeToString(k)
	states := c.KeyringAll(ctx, KeyringList, "")
	ok := true
	for i := range states {
		switch {
		case strings.HasPrefix(states[i].Error, notReached):
			// Down already: it catches up with install and use again when
			// it is back (README), and must not hold up the others.
		case states[i].Error != "":
			ok = false
			states[i].Error = "use refused, nothing changed: " + states[i].Error
		case !slices.Contains(states[i].Keys, want):
			ok = false
			states[i].Error = "use refused, nothing changed: the key is not installed here (run keyring install again)"
		}
	}
	if !ok {
		for i := range states {
			if states[i].Error == "" {
				states[i].Error = "use refused, nothing changed: other nodes lack the key"
			}
		}
	}
	return states, ok
}
