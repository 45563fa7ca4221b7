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
