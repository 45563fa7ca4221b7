package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"clustermail/peer"
)

type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, fmt.Errorf("no snapshots") }
func (nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }
func (nopFSM) applied() uint64                     { return 0 }
func (nopFSM) advanced() <-chan struct{}           { return nil } // never moves
func newKey(t *testing.T) string                   { t.Helper(); b := make([]byte, 32); rand.Read(b); return enc(b) }
func enc(b []byte) string                          { return base64.StdEncoding.EncodeToString(b) }
func dec(t *testing.T, s string) []byte {
	t.Helper()
	k, err := DecodeGossipKey(s)
	must(t, err)
	return k
}
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
func gossipAddr(c *Cluster) string { return c.ml.LocalNode().Address() }
func (c *Cluster) aliveCount() int { return c.ml.NumMembers() }
func logger() *slog.Logger         { return slog.New(slog.DiscardHandler) }
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().String()
}

// startNode runs a cluster member in process: Raft on memory stores (never
// bootstrapped: these tests are about gossip), gossip on a free loopback
// port with the given key ("" for none), the internal RPC on its cluster
// port. dir is its data dir, where the keyring is kept.
func startNode(t *testing.T, name, dir, key string, join ...string) *Cluster {
	t.Helper()
	raftAddr := freeAddr(t)
	ln, err := peer.Listen(raftAddr, logger())
	must(t, err)
	var seed []byte
	if key != "" {
		seed = dec(t, key)
	}
	store := raft.NewInmemStore()
	c, err := New(Config{Name: name, ID: name + "-id", GossipAddr: "127.0.0.1:0", Join: join, DataDir: dir, Logger: logger(),
		GossipKey: seed, Meta: Meta{ID: name + "-id", RaftAddr: raftAddr, Version: "test"}},
		Stores{Log: store, Stable: store, Snapshots: raft.NewInmemSnapshotStore(), FSM: nopFSM{}, Applied: nopFSM{}.applied,
			Advanced: nopFSM{}.advanced}, ln)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	srv := peer.NewHTTPServer(c.Handler())
	go srv.Serve(ln.RPC())
	c.Start()
	t.Cleanup(func() {
		srv.Close()
		c.Shutdown()
		ln.Close()
	})
	return c
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stays checks that cond holds for the whole of d.
func stays(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !cond() {
			t.Fatalf("%s stopped holding", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestGossipEncryption(t *testing.T) {
	key := newKey(t)
	a := startNode(t, "a", t.TempDir(), key)
	b := startNode(t, "b", t.TempDir(), key, gossipAddr(a))
	c := startNode(t, "c", t.TempDir(), key, gossipAddr(a))
	eventually(t, 20*time.Second, "three nodes with the same key see each other", func() bool {
		return a.aliveCount() == 3 && b.aliveCount() == 3 && c.aliveCount() == 3
	})

	for _, tc := range []struct{ name, key string }{{"other-key", newKey(t)}, {"no-key", ""}} {
		t.Run(tc.name+" not admitted", func(t *testing.T) {
			x := startNode(t, tc.name, t.TempDir(), tc.key, gossipAddr(a), gossipAddr(b))
			stays(t, 3*time.Second, "the outsider kept out", func() bool {
				return a.aliveCount() == 3 && x.aliveCount() == 1 && !slices.ContainsFunc(a.table.list(), func(m Member) bool { return m.Name == tc.name })
			})
		})
	}
}

func TestKeyringRotationAcrossNodes(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	a := startNode(t, "a", dirs[0], k1)
	b := startNode(t, "b", dirs[1], k1, gossipAddr(a))
	c := startNode(t, "c", dirs[2], k1, gossipAddr(a))
	nodes := []*Cluster{a, b, c}
	eventually(t, 20*time.Second, "three members", func() bool {
		return len(a.table.list()) == 3 && a.aliveCount() == 3 && b.aliveCount() == 3 && c.aliveCount() == 3
	})
	ctx := context.Background()

	check := func(op string, res []KeyringState, primary string, keys ...string) {
		t.Helper()
		if len(res) != 3 {
			t.Fatalf("%s: %d results, want 3: %+v", op, len(res), res)
		}
		for _, r := range res {
			slices.Sort(r.Keys)
			want := slices.Sorted(slices.Values(keys))
			if r.Error != "" || r.Primary != primary || !slices.Equal(r.Keys, want) {
				t.Fatalf("%s on %s: %+v; want primary %s keys %v", op, r.Node, r, primary, want)
			}
		}
	}
	check("list", a.KeyringAll(ctx, KeyringList, ""), k1, k1)
	// Using a key not installed everywhere is refused.
	for _, r := range b.KeyringAll(ctx, KeyringUse, k2) {
		if r.Error == "" {
			t.Fatalf("use of an uninstalled key accepted on %s", r.Node)
		}
	}
	// Installed on one node only: use is refused everywhere and no node
	// switches, or gossip would split.
	if _, err := a.KeyringLocal(KeyringInstall, k2); err != nil {
		t.Fatal(err)
	}
	for _, r := range b.KeyringAll(ctx, KeyringUse, k2) {
		if r.Error == "" {
			t.Fatalf("use of a key missing on some nodes accepted on %s", r.Node)
		}
	}
	for _, n := range nodes {
		if st, _ := n.KeyringLocal(KeyringList, ""); st.Primary != k1 {
			t.Fatalf("%s switched to the new key although others lack it", st.Node)
		}
	}
	check("install", b.KeyringAll(ctx, KeyringInstall, k2), k1, k1, k2)
	check("use", c.KeyringAll(ctx, KeyringUse, k2), k2, k1, k2)
	for _, r := range a.KeyringAll(ctx, KeyringRemove, k2) {
		if r.Error == "" {
			t.Fatalf("removing the primary key accepted on %s", r.Node)
		}
	}
	check("remove", a.KeyringAll(ctx, KeyringRemove, k1), k2, k2)

	// The cluster still gossips with the new key only, and a node given
	// only the new key joins while one with the old key cannot.
	d := startNode(t, "d", t.TempDir(), k2, gossipAddr(b))
	eventually(t, 20*time.Second, "a node with the new key joins", func() bool {
		return a.aliveCount() == 4 && d.aliveCount() == 4
	})
	old := startNode(t, "old", t.TempDir(), k1, gossipAddr(b))
	stays(t, 3*time.Second, "a node with the removed key kept out", func() bool { return old.aliveCount() == 1 })
	for _, n := range nodes {
		if n.aliveCount() < 4 {
			t.Fatalf("%s sees %d members after the rotation", n.Name(), n.aliveCount())
		}
	}

	// Each node kept the keyring: a restart uses k2, whatever the flag says.
	for _, dir := range dirs {
		kr, err := openKeyring(dir, dec(t, k1), logger())
		must(t, err)
		if enc(kr.GetPrimaryKey()) != k2 || len(kr.GetKeys()) != 1 {
			t.Fatalf("kept keyring in %s: primary %s, %d keys", dir, enc(kr.GetPrimaryKey()), len(kr.GetKeys()))
		}
		st, err := os.Stat(filepath.Join(dir, KeyringFile))
		must(t, err)
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("keyring file mode %v", st.Mode())
		}
	}
}

func TestKeyringWithoutEncryption(t *testing.T) {
	a := startNode(t, "a", t.TempDir(), "")
	if _, err := a.KeyringLocal(KeyringList, ""); err == nil {
		t.Fatal("keyring list on a node without gossip encryption succeeded")
	}
	if _, err := os.Stat(filepath.Join(a.cfg.DataDir, KeyringFile)); err == nil {
		t.Fatal("a keyring file was written without a key")
	}
}

func TestDecodeGossipKey(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{enc(make([]byte, 16)), true},
		{enc(make([]byte, 24)), true},
		{enc(make([]byte, 32)), true},
		{enc(make([]byte, 31)), false},
		{"not base64!", false},
		{"", false},
	} {
		if _, err := DecodeGossipKey(tc.in); (err == nil) != tc.ok {
			t.Errorf("DecodeGossipKey(%q): %v", tc.in, err)
		}
	}
}
