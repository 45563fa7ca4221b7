package pop3d

import (
	"testing"
	"time"

	"clustermail/throttle"
)

// TestConnectionsPerIP: past the per-address limit a client is told so
// and disconnected; a freed slot is reused.
func TestConnectionsPerIP(t *testing.T) {
	h := start(t, Config{MaxConnectionsPerIP: 2})
	first := h.dialGreeted()
	h.dialGreeted()
	third := h.dial()
	third.expect("-ERR [SYS/TEMP] Too many connections from your address")
	third.closed()
	if got := h.counter(h.srv.m.refused); got != 1 {
		t.Errorf("refused = %v, want 1", got)
	}
	first.cmd("QUIT", "+OK")
	first.closed()
	h.waitSlotFreed()
}

// TestLoginLockout: a locked-out account or address is refused even with
// the right password, without a password check.
func TestLoginLockout(t *testing.T) {
	h := start(t, Config{})
	h.srv.wait = func(time.Duration) bool { return true }
	for _, key := range []string{"user:alice", "ip:127.0.0.1"} {
		for i := 0; i < throttle.DefaultLockout; i++ {
			h.limiter.Fail(key)
		}
		c := h.dialGreeted()
		c.cmd("USER alice", "+OK")
		c.cmd("PASS "+alicePass, "-ERR [AUTH] too many failed attempts, try later")
		c.cmd("QUIT", "+OK")
		h.limiter.Succeed(key)
	}
	c := h.dialGreeted()
	c.cmd("USER alice", "+OK")
	c.cmd("PASS "+alicePass, "+OK")
	c.cmd("QUIT", "+OK")
}
