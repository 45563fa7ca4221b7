package mailstore

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkDeliver measures synced deliveries from 8×GOMAXPROCS parallel
// goroutines on the real filesystem (fsync cost included; accounts exist
// beforehand). "spread" delivers to 1000
// accounts, as a node serving many recipients does, so commits from
// different accounts share WAL syncs; "one-account" delivers to a single
// account, whose writes the per-account lock serialises.
func BenchmarkDeliver(b *testing.B) {
	for _, size := range []int{1 << 10, 32 << 10} {
		for _, spread := range []struct {
			name     string
			accounts int
		}{{"spread", 1000}, {"one-account", 1}} {
			b.Run(fmt.Sprintf("%dKiB/%s", size>>10, spread.name), func(b *testing.B) {
				s, err := Open(b.TempDir(), Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				body := make([]byte, size)
				for i := range body {
					body[i] = 'a' + byte(i%26)
				}
				for i := range spread.accounts {
					if err := s.EnsureAccount(fmt.Sprintf("user%d@example.com", i)); err != nil {
						b.Fatal(err)
					}
				}
				var seq atomic.Int64
				now := time.Now()
				b.SetBytes(int64(size))
				b.SetParallelism(8) // many SMTP sessions per CPU
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						n := seq.Add(1)
						account := fmt.Sprintf("user%d@example.com", n%int64(spread.accounts))
						if _, _, err := s.Deliver(account, fmt.Sprint("q", n), now, body); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
