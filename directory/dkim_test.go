package directory

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"clustermail/raftstore"
)

func pemOf(t *testing.T, k any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func TestDKIMKeys(t *testing.T) {
	ctx := context.Background()
	d := newTestDirectory(t)
	clock := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	d.now = func() time.Time { clock = clock.Add(time.Minute); return clock }
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	rsaPriv, err := rsa.GenerateKey(rand.Reader, 1024) // the smallest accepted: fast
	if err != nil {
		t.Fatal(err)
	}
	ed, rs := pemOf(t, edPriv), pemOf(t, rsaPriv)
	mustDo(t, func() error { _, err := d.AddDomain(ctx, "example.test"); return err })
	mustDo(t, func() error { _, err := d.AddDomain(ctx, "example.test.org"); return err })

	tests := []struct {
		name string
		key  DKIMKey
		code string // "" for success
	}{
		{"ed25519", DKIMKey{Domain: "Example.TEST.", Selector: "ED1", Algorithm: AlgEd25519, PrivateKey: ed}, ""},
		{"rsa", DKIMKey{Domain: "example.test", Selector: "rsa1", Algorithm: AlgRSA, PrivateKey: rs}, ""},
		{"second ed25519", DKIMKey{Domain: "example.test", Selector: "a.ed2", Algorithm: AlgEd25519, PrivateKey: ed}, ""},
		{"other domain sharing a prefix", DKIMKey{Domain: "example.test.org", Selector: "s", Algorithm: AlgEd25519, PrivateKey: ed}, ""},
		{"same selector", DKIMKey{Domain: "example.test", Selector: "ed1", Algorithm: AlgEd25519, PrivateKey: ed}, raftstore.CodeConflict},
		{"domain not hosted", DKIMKey{Domain: "nothosted.test", Selector: "s", Algorithm: AlgEd25519, PrivateKey: ed}, raftstore.CodeNotFound},
		{"algorithm mismatch", DKIMKey{Domain: "example.test", Selector: "s", Algorithm: AlgRSA, PrivateKey: ed}, raftstore.CodeInvalid},
		{"not pem", DKIMKey{Domain: "example.test", Selector: "s", Algorithm: AlgRSA, PrivateKey: "nope"}, raftstore.CodeInvalid},
		{"bad selector", DKIMKey{Domain: "example.test", Selector: "a_b", Algorithm: AlgEd25519, PrivateKey: ed}, raftstore.CodeInvalid},
		{"empty selector", DKIMKey{Domain: "example.test", Algorithm: AlgEd25519, PrivateKey: ed}, raftstore.CodeInvalid},
	}
	for _, tc := range tests {
		_, err := d.AddDKIMKey(ctx, tc.key)
		if tc.code == "" && err != nil || tc.code != "" && !raftstore.IsCode(err, tc.code) {
			t.Errorf("%s: err %v, want code %q", tc.name, err, tc.code)
		}
	}

	ks, err := d.DKIMKeys("EXAMPLE.test")
	if err != nil {
		t.Fatal(err)
	}
	var sels []string
	for _, k := range ks {
		sels = append(sels, k.Selector)
	}
	// Oldest first, not in selector order: the oldest key signs.
	if got := joinSel(sels); got != "ed1 rsa1 a.ed2" {
		t.Fatalf("keys of example.test: %s", got)
	}
	if k := ks[0]; k.Domain != "example.test" || k.Algorithm != AlgEd25519 || k.PrivateKey != ed || k.Created.IsZero() {
		t.Errorf("stored key %+v", k)
	}
	if all, _ := d.DKIMKeys(""); len(all) != 4 {
		t.Errorf("%d keys in all, want 4", len(all))
	}

	if err := d.RemoveDomain(ctx, "example.test"); !raftstore.IsCode(err, raftstore.CodeConflict) {
		t.Fatalf("removing a domain with DKIM keys: %v", err)
	}
	if err := d.RemoveDKIMKey(ctx, "example.test", "nope"); !raftstore.IsCode(err, raftstore.CodeNotFound) {
		t.Fatalf("removing a missing key: %v", err)
	}
	for _, s := range []string{"ED1", "rsa1", "a.ed2"} {
		mustDo(t, func() error { return d.RemoveDKIMKey(ctx, "example.test", s) })
	}
	if ks, _ := d.DKIMKeys("example.test"); len(ks) != 0 {
		t.Fatalf("keys left: %+v", ks)
	}
	if _, ok, _ := d.DKIMKey("example.test.org", "s"); !ok {
		t.Fatal("key of example.test.org gone with those of example.test")
	}
	mustDo(t, func() error { return d.RemoveDomain(ctx, "example.test") })
}

func joinSel(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

// sink keeps a snapshot in memory.
type sink struct{ bytes.Buffer }

func (*sink) ID() string    { return "test" }
func (*sink) Cancel() error { return nil }
func (*sink) Close() error  { return nil }

// TestDKIMKeysSurviveSnapshot: a node that catches up from a snapshot must
// sign with the same keys.
func TestDKIMKeysSurviveSnapshot(t *testing.T) {
	ctx := context.Background()
	src := newTestDirectory(t)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	mustDo(t, func() error { _, err := src.AddDomain(ctx, "example.test"); return err })
	added, err := src.AddDKIMKey(ctx, DKIMKey{Domain: "example.test", Selector: "s1", Algorithm: AlgEd25519, PrivateKey: pemOf(t, edPriv)})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := src.state.(*raftstore.FSM).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var out sink
	if err := snap.Persist(&out); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	f, err := raftstore.OpenFSM("state", raftstore.FSMOptions{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	Register(f)
	if err := f.Restore(io.NopCloser(bytes.NewReader(out.Bytes()))); err != nil {
		t.Fatal(err)
	}
	dst := New(f, &direct{f: f, i: f.AppliedIndex()})
	ks, err := dst.DKIMKeys("example.test")
	if err != nil || len(ks) != 1 {
		t.Fatalf("keys after restore: %+v %v", ks, err)
	}
	if k := ks[0]; k.Selector != "s1" || k.PrivateKey != added.PrivateKey || !k.Created.Equal(added.Created) {
		t.Errorf("restored key %+v, want %+v", k, added)
	}
	// The restored replica goes on applying key commands.
	if err := dst.RemoveDKIMKey(ctx, "example.test", "s1"); err != nil {
		t.Fatal(err)
	}
}
