package directory

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"clustermail/raftstore"
)

// benchAccounts is the directory size of BenchmarkResolve; override it
// with CLUSTERMAIL_BENCH_ACCOUNTS (e.g. 1000000).
func benchAccounts(b *testing.B) int {
	n := 100_000
	if s := os.Getenv("CLUSTERMAIL_BENCH_ACCOUNTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("CLUSTERMAIL_BENCH_ACCOUNTS=%q: want a positive number", s)
		}
		n = v
	}
	return n
}

func benchAddress(i int) string { return fmt.Sprintf("user%07d@bench.test", i) }

// fillDirectory applies n account-add commands to f in Raft-sized
// batches, as a follower applying the log would. Every account carries
// the same password hash: hashing a million passwords (argon2id) would
// take hours and changes nothing about lookups.
func fillDirectory(b *testing.B, f *raftstore.FSM, n int) {
	var index uint64
	apply := func(logs []*raft.Log) {
		for i, r := range f.ApplyBatch(logs) {
			if r != nil {
				b.Fatalf("apply %d: %v", logs[i].Index, r)
			}
		}
	}
	cmd := func(t raftstore.CommandType, v any) *raft.Log {
		data, err := raftstore.Encode(t, v)
		if err != nil {
			b.Fatal(err)
		}
		index++
		return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
	}
	now := time.Now().UTC()
	apply([]*raft.Log{cmd(cmdDomainAdd, Domain{Name: "bench.test", Created: now})})
	hash, err := HashPassword("bench")
	if err != nil {
		b.Fatal(err)
	}
	nodes := []string{"n1", "n2", "n3"}
	const batch = 1024
	logs := make([]*raft.Log, 0, batch)
	for i := 0; i < n; i++ {
		a := benchAddress(i)
		logs = append(logs, cmd(cmdAccountAdd, Account{Address: a, Hash: hash, Node: Place(a, nodes), Created: now}))
		if len(logs) == batch || i == n-1 {
			apply(logs)
			logs = logs[:0]
		}
	}
}

// BenchmarkResolve measures Directory.Resolve, the lookup behind every
// RCPT TO, over a directory of CLUSTERMAIL_BENCH_ACCOUNTS accounts
// (default 100 000) in an on-disk Pebble state store (the OS page cache
// is warm; Pebble's own block cache is the FSM's 16 MiB): an existing
// account picked at random ("hit"), an unknown user of the hosted domain
// ("miss", the 550 5.1.1 path) and a domain not hosted ("relay", 554).
func BenchmarkResolve(b *testing.B) {
	n := benchAccounts(b)
	f, err := raftstore.OpenFSM(b.TempDir(), raftstore.FSMOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	Register(f)
	start := time.Now()
	fillDirectory(b, f, n)
	b.Logf("%d accounts applied in %s (%.0f accounts/s)", n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
	d := New(f, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	b.Run(fmt.Sprintf("accounts=%d/hit", n), func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			res, err := d.Resolve(benchAddress(rng.IntN(n)))
			if err != nil || len(res.Accounts) != 1 {
				b.Fatalf("resolve: %v %+v", err, res)
			}
		}
	})
	b.Run(fmt.Sprintf("accounts=%d/miss", n), func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			res, err := d.Resolve(fmt.Sprintf("nobody%07d@bench.test", rng.IntN(n)))
			if err != nil || !res.Hosted || len(res.Accounts) != 0 {
				b.Fatalf("resolve: %v %+v", err, res)
			}
		}
	})
	b.Run(fmt.Sprintf("accounts=%d/relay", n), func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			res, err := d.Resolve("someone@elsewhere.test")
			if err != nil || res.Hosted {
				b.Fatalf("resolve: %v %+v", err, res)
			}
		}
	})
}
