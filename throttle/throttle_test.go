package throttle

import (
	"testing"
	"time"
)

func TestDelayGrowsAndForgets(t *testing.T) {
	now := time.Unix(1e9, 0)
	l := New()
	l.now = func() time.Time { return now }
	for i, want := range []time.Duration{0, 0, 0, time.Second, 2 * time.Second, 4 * time.Second} {
		if got := l.Delay("ip:a", "user:x"); got != want {
			t.Fatalf("after %d failures: delay %v, want %v", i, got, want)
		}
		l.Fail("ip:a", "user:x")
	}
	for i := 0; i < 20; i++ {
		l.Fail("ip:a")
	}
	if got := l.Delay("ip:a"); got != 30*time.Second {
		t.Fatalf("cap: %v", got)
	}
	if got := l.Delay("ip:other", "user:x"); got == 0 {
		t.Fatal("the account's failures must slow another client too")
	}
	l.Succeed("user:x")
	if got := l.Delay("ip:other", "user:x"); got != 0 {
		t.Fatalf("after success: %v", got)
	}
	now = now.Add(forget)
	if got := l.Delay("ip:a"); got != 0 {
		t.Fatalf("not forgotten: %v", got)
	}
}

func TestLockout(t *testing.T) {
	now := time.Unix(1e9, 0)
	l := New()
	l.now = func() time.Time { return now }
	for i := 0; i < DefaultLockout; i++ {
		if l.Locked("ip:a", "user:x") {
			t.Fatalf("locked after %d failures", i)
		}
		l.Fail("ip:a", "user:x")
		now = now.Add(time.Minute)
	}
	for _, tc := range []struct {
		keys []string
		want bool
	}{
		{[]string{"ip:a"}, true},
		{[]string{"ip:b", "user:x"}, true}, // the account, from anywhere
		{[]string{"ip:a", "user:y"}, true}, // the client, for any account
		{[]string{"ip:b", "user:y"}, false},
	} {
		if got := l.Locked(tc.keys...); got != tc.want {
			t.Errorf("Locked(%v) = %v, want %v", tc.keys, got, tc.want)
		}
	}
	// The window runs from the last failure.
	now = now.Add(forget - time.Minute - time.Second)
	if !l.Locked("ip:a") {
		t.Fatal("lockout ended before the window")
	}
	now = now.Add(time.Second)
	if l.Locked("ip:a") || l.Locked("user:x") {
		t.Fatal("lockout outlived the window")
	}
	// Failures spread wider than the window never add up to a lockout.
	for i := 0; i < 3*DefaultLockout; i++ {
		l.Fail("ip:slow")
		now = now.Add(forget)
	}
	if l.Locked("ip:slow") {
		t.Fatal("failures 15 minutes apart locked the key")
	}
}

func TestConns(t *testing.T) {
	c := NewConns(2)
	if !c.Acquire("a") || !c.Acquire("a") {
		t.Fatal("refused below the limit")
	}
	if c.Acquire("a") {
		t.Fatal("third connection allowed")
	}
	if !c.Acquire("b") {
		t.Fatal("another address refused")
	}
	c.Release("a")
	if !c.Acquire("a") {
		t.Fatal("released slot not reusable")
	}
	c.Release("a")
	c.Release("a")
	c.Release("b")
	if len(c.n) != 0 {
		t.Fatalf("addresses without connections kept: %v", c.n)
	}
	var unlimited *Conns
	for i := 0; i < 100; i++ {
		if !unlimited.Acquire("a") || !NewConns(0).Acquire("a") {
			t.Fatal("unlimited refused")
		}
	}
}

func TestRate(t *testing.T) {
	now := time.Unix(1e9, 0)
	r := NewRate(10)
	r.now = func() time.Time { return now }
	for i := 0; i < 10; i++ {
		if !r.Allow("a") {
			t.Fatalf("refused message %d", i+1)
		}
		r.Add("a", 1)
	}
	if r.Allow("a") {
		t.Fatal("11th message in the hour allowed")
	}
	if !r.Allow("b") {
		t.Fatal("another sender refused")
	}
	// Half an hour later, still the same hour's bucket: refused.
	now = now.Add(30 * time.Minute)
	if r.Allow("a") {
		t.Fatal("allowed within the hour")
	}
	// 1h30 after the start the last hour weighs half: 5 of 10 remain.
	now = now.Add(time.Hour)
	for i := 0; i < 5; i++ {
		if !r.Allow("a") {
			t.Fatalf("refused message %d of the next half hour", i+1)
		}
		r.Add("a", 1)
	}
	if r.Allow("a") {
		t.Fatal("burst at the turn of the hour let through twice")
	}
	// After two idle hours, everything is forgotten.
	now = now.Add(3 * time.Hour)
	if !r.Allow("a") {
		t.Fatal("not forgotten")
	}
	if !NewRate(0).Allow("a") {
		t.Fatal("0 must mean unlimited")
	}
}
