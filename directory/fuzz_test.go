package directory

import (
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"clustermail/raftstore"
)

func FuzzValidateAddress(f *testing.F) {
	for _, s := range []string{"alice@example.test", "a.b+c@sub.example.test", "@x", "x@", "a..b@x.test", ".a@x.test",
		"\x00@x.test", "a@-x.test", "a@x_y.test", "ü@exämple.test", "a@" + strings.Repeat("x.", 200) + "test", "a@[127.0.0.1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		err := ValidateAddress(addr)
		if err != nil {
			return
		}
		// What passes has a local part and a domain, neither of which
		// can break a header, a key or a log line.
		i := strings.LastIndexByte(addr, '@')
		if i <= 0 || i == len(addr)-1 {
			t.Fatalf("%q passed without local@domain", addr)
		}
		if strings.ContainsFunc(addr, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			t.Fatalf("%q passed with a control character or space", addr)
		}
		if ValidateDomain(DomainOf(addr)) != nil {
			t.Fatalf("%q passed, its domain %q does not", addr, DomainOf(addr))
		}
		if n := Normalize(addr); ValidateAddress(n) != nil {
			t.Fatalf("%q passed, its normal form %q does not", addr, n)
		}
	})
}

// recorder applies commands directly and keeps a copy of each.
type recorder struct {
	direct
	cmds [][]byte
}

func (r *recorder) Apply(ctx context.Context, cmd []byte) error {
	r.cmds = append(r.cmds, append([]byte(nil), cmd...))
	return r.direct.Apply(ctx, cmd)
}

// FuzzDirectoryApply feeds arbitrary log entries to the directory's
// handlers. A payload that does not decode stops the node on purpose
// (raftstore.Decode panics: a buggy proposer, never diverge); anything
// else must be applied or refused with a business error, never crash.
func FuzzDirectoryApply(f *testing.F) {
	fsm, err := raftstore.OpenFSM("state", raftstore.FSMOptions{FS: vfs.NewMem()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { fsm.Close() })
	Register(fsm)
	rec := &recorder{direct: direct{f: fsm}}
	d := New(fsm, rec)
	ctx := context.Background()
	_, _ = d.AddDomain(ctx, "example.test")
	_, _ = d.AddAccount(ctx, NewAccount{Address: "alice@example.test", Password: "pw", Node: "n1", Quota: 1 << 20})
	_ = d.SetPassword(ctx, "alice@example.test", "pw2")
	_, _ = d.SetAlias(ctx, "all@example.test", []string{"alice@example.test", "bob@elsewhere.test"})
	_ = d.RemoveAlias(ctx, "all@example.test")
	_ = d.RemoveAccount(ctx, "alice@example.test")
	_ = d.RemoveDomain(ctx, "example.test")
	for _, c := range rec.cmds {
		f.Add(c)
	}
	f.Add([]byte{byte(cmdAccountAdd), '{', '}'})
	f.Add([]byte{byte(cmdAliasSet), '{', '"', 't', 'a', 'r', 'g', 'e', 't', 's', '"', ':', 'n', 'u', 'l', 'l', '}'})
	index := rec.i
	f.Fuzz(func(t *testing.T, data []byte) {
		index++
		applyNoCrash(t, fsm, index, data)
		// Reads of whatever state the entry left must not crash either.
		_, _, _ = d.Account("alice@example.test")
		_, _ = d.Resolve("all@example.test")
	})
}

// applyNoCrash applies one entry, failing on a runtime panic. Deliberate
// stops (a panic with a message, as raftstore and the handlers raise for
// undecodable entries or failed storage) are what the node is meant to do.
func applyNoCrash(t *testing.T, fsm *raftstore.FSM, index uint64, data []byte) {
	t.Helper()
	defer func() {
		if v := recover(); v != nil {
			if re, ok := v.(runtime.Error); ok {
				t.Fatalf("entry %q crashed the state machine: %v", data, re)
			}
		}
	}()
	fsm.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
}
