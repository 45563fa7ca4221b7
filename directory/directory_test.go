package directory

import (
	"context"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"clustermail/raftstore"
)

// direct applies commands straight to an FSM, standing in for Raft.
type direct struct {
	f *raftstore.FSM
	i uint64
}

func (d *direct) Apply(_ context.Context, cmd []byte) error {
	d.i++
	if err, ok := d.f.Apply(&raft.Log{Index: d.i, Type: raft.LogCommand, Data: cmd}).(error); ok {
		return err
	}
	return nil
}

func newTestDirectory(t *testing.T) *Directory {
	t.Helper()
	f, err := raftstore.OpenFSM("state", raftstore.FSMOptions{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	Register(f)
	return New(f, &direct{f: f})
}

func TestDirectoryLifecycle(t *testing.T) {
	ctx := context.Background()
	d := newTestDirectory(t)
	if _, err := d.AddDomain(ctx, "Example.TEST"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddDomain(ctx, "example.test"); !raftstore.IsCode(err, raftstore.CodeConflict) {
		t.Fatalf("second add: %v", err)
	}
	if _, err := d.AddDomain(ctx, "other.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddAccount(ctx, NewAccount{Address: "Alice@Example.test", Password: "pw", Node: "n1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddAccount(ctx, NewAccount{Address: "bob@other.test", Password: "pw", Node: "n2", Quota: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.AddAccount(ctx, NewAccount{Address: "x@nothosted.test", Password: "pw", Node: "n1"}); !raftstore.IsCode(err, raftstore.CodeNotFound) {
		t.Fatalf("account in unhosted domain: %v", err)
	}
	a, ok, err := d.Account("ALICE@example.test")
	if err != nil || !ok || a.Node != "n1" || a.Address != "alice@example.test" {
		t.Fatalf("account = %+v %v %v", a, ok, err)
	}
	if _, ok := d.Authenticate("alice@example.test", "pw"); !ok {
		t.Fatal("right password refused")
	}
	if _, ok := d.Authenticate("alice@example.test", "nope"); ok {
		t.Fatal("wrong password accepted")
	}
	if err := d.SetPassword(ctx, "alice@example.test", "new"); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Authenticate("alice@example.test", "new"); !ok {
		t.Fatal("new password refused")
	}
	if _, err := d.SetAlias(ctx, "team@example.test", []string{"alice@example.test", "bob@other.test", "alice@example.test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SetAlias(ctx, "ext@example.test", []string{"someone@elsewhere.test"}); err != nil {
		t.Fatalf("alias forwarding to another domain: %v", err)
	}
	if res, _ := d.Resolve("ext@example.test"); len(res.Remote) != 1 || res.Remote[0] != "someone@elsewhere.test" || len(res.Accounts) != 0 {
		t.Fatalf("forwarding alias resolves to %+v", res)
	}
	if err := d.RemoveAlias(ctx, "ext@example.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SetAlias(ctx, "alice@example.test", []string{"bob@other.test"}); !raftstore.IsCode(err, raftstore.CodeConflict) {
		t.Fatalf("alias over an account: %v", err)
	}
	if err := d.RemoveDomain(ctx, "example.test"); !raftstore.IsCode(err, raftstore.CodeConflict) {
		t.Fatalf("remove non-empty domain: %v", err)
	}
	accs, _ := d.Accounts("other.test")
	if len(accs) != 1 || accs[0].Address != "bob@other.test" {
		t.Fatalf("accounts of other.test = %+v", accs)
	}
	for _, step := range []func() error{
		func() error { return d.RemoveAlias(ctx, "team@example.test") },
		func() error { return d.RemoveAccount(ctx, "alice@example.test") },
		func() error { return d.RemoveDomain(ctx, "example.test") },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if d.IsHosted("example.test") {
		t.Fatal("domain still hosted after removal")
	}
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	d := newTestDirectory(t)
	mustDo(t, func() error { _, err := d.AddDomain(ctx, "a.test"); return err })
	mustDo(t, func() error { _, err := d.AddDomain(ctx, "b.test"); return err })
	for _, a := range []string{"u1@a.test", "u2@b.test"} {
		mustDo(t, func() error {
			_, err := d.AddAccount(ctx, NewAccount{Address: a, Password: "p", Node: "n"})
			return err
		})
	}
	mustDo(t, func() error {
		_, err := d.SetAlias(ctx, "all@a.test", []string{"u1@a.test", "u2@b.test", "loop@a.test"})
		return err
	})
	mustDo(t, func() error {
		_, err := d.SetAlias(ctx, "loop@a.test", []string{"all@a.test", "gone@a.test"})
		return err
	})
	tests := []struct {
		addr   string
		hosted bool
		want   []string
	}{
		{"u1@a.test", true, []string{"u1@a.test"}},
		{"U1@A.TEST", true, []string{"u1@a.test"}},
		{"nobody@a.test", true, nil},
		{"u1@elsewhere.test", false, nil},
		{"all@a.test", true, []string{"u1@a.test", "u2@b.test"}},
		{"loop@a.test", true, []string{"u1@a.test", "u2@b.test"}},
	}
	for _, tc := range tests {
		res, err := d.Resolve(tc.addr)
		if err != nil {
			t.Fatalf("%s: %v", tc.addr, err)
		}
		var got []string
		for _, a := range res.Accounts {
			got = append(got, a.Address)
		}
		if res.Hosted != tc.hosted || len(got) != len(tc.want) {
			t.Errorf("%s: hosted=%v accounts=%v, want %v %v", tc.addr, res.Hosted, got, tc.hosted, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: accounts=%v, want %v", tc.addr, got, tc.want)
			}
		}
	}
}

func mustDo(t *testing.T, f func() error) {
	t.Helper()
	if err := f(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateAddress(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"a@b.test", true}, {"first.last+tag@sub.example.org", true},
		{"", false}, {"a", false}, {"@b.test", false}, {"a@", false}, {"a@b", false},
		{"a b@c.test", false}, {".a@b.test", false}, {"a..b@c.test", false}, {"a@-b.test", false},
		{"a@b_c.test", false}, {"<a>@b.test", false},
		{"\xec\xec@b.test", false},                   // not UTF-8 (lowercasing would turn it into U+FFFD)
		{strings.Repeat("Ⱥ", 32) + "@b.test", false}, // 64 octets, 96 once lowercased
		{strings.Repeat("ü", 32) + "@b.test", true},
	} {
		if err := ValidateAddress(tc.in); (err == nil) != tc.ok {
			t.Errorf("ValidateAddress(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestPlaceIsStableAndSpreads(t *testing.T) {
	nodes := []string{"n1", "n2", "n3"}
	counts := map[string]int{}
	for i := 0; i < 3000; i++ {
		a := "user" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676)) + "@x.test"
		n := Place(a, nodes)
		if Place(a, []string{"n3", "n1", "n2"}) != n {
			t.Fatal("placement depends on the order of nodes")
		}
		counts[n]++
	}
	for _, n := range nodes {
		if counts[n] < 800 {
			t.Errorf("node %s got %d of 3000 accounts: placement is skewed", n, counts[n])
		}
	}
	// Adding a node moves only the accounts the new node wins.
	moved := 0
	for i := 0; i < 1000; i++ {
		a := "u" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + "@y.test"
		before, after := Place(a, nodes), Place(a, append(nodes, "n4"))
		if before != after {
			if after != "n4" {
				t.Fatalf("%s moved from %s to %s, not to the new node", a, before, after)
			}
			moved++
		}
	}
	if moved == 0 || moved > 400 {
		t.Errorf("%d of 1000 accounts moved to a fourth node", moved)
	}
	if Place("a@b.test", nil) != "" {
		t.Error("placement with no nodes must be empty")
	}
}

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := HashPassword("s3cret")
	if h == h2 {
		t.Error("two hashes of one password are equal: salt missing")
	}
	if !CheckPassword(h, "s3cret") || CheckPassword(h, "s3creT") || CheckPassword("garbage", "s3cret") {
		t.Error("CheckPassword is wrong")
	}
	if _, err := HashPassword(""); err == nil {
		t.Error("empty password hashed")
	}
}

// TestOlderEntriesStillApply: an entry written by an older version (here,
// an account without fields added since) applies on a newer node.
func TestOlderEntriesStillApply(t *testing.T) {
	d := newTestDirectory(t)
	ctx := context.Background()
	if _, err := d.AddDomain(ctx, "old.test"); err != nil {
		t.Fatal(err)
	}
	old := append([]byte{byte(cmdAccountAdd)}, `{"address":"o@old.test","hash":"x","node":"n1"}`...)
	if err := d.apply.Apply(ctx, old); err != nil {
		t.Fatal(err)
	}
	a, ok, err := d.Account("o@old.test")
	if err != nil || !ok || a.Quota != 0 || a.Node != "n1" {
		t.Fatalf("account from an old entry: %+v %v %v", a, ok, err)
	}
}
