// Package throttle holds the limits against abuse shared by the protocol
// front ends: login failures (SMTP AUTH, IMAP, POP3) that slow down and
// then lock out password guessing, concurrent connections per client
// address, and a sending rate per authenticated account. Everything is
// counted in this node's memory only: a client spread over several nodes
// gets each node's allowance.
package throttle

import (
	"sync"
	"time"
)

// Limiter remembers recent login failures by key ("ip:...", "user:...").
type Limiter struct {
	mu      sync.Mutex
	entries map[string]*failures
	now     func() time.Time
	lockout int // failures that lock a key out; 0 never
}

type failures struct {
	count int
	last  time.Time
}

// forget is how long a key's failures are remembered, and so how long a
// lockout lasts after the last failure.
const forget = 15 * time.Minute

// DefaultLockout is how many failures within the window lock a key out.
const DefaultLockout = 10

// New returns an empty limiter that locks a key out after DefaultLockout
// failures.
func New() *Limiter {
	return &Limiter{entries: map[string]*failures{}, now: time.Now, lockout: DefaultLockout}
}

// Delay is how long to wait before answering the next attempt from any of
// keys: nothing for the first three failures, then doubling from one
// second, capped at 30 s.
func (l *Limiter) Delay(keys ...string) time.Duration {
	worst := l.worst(keys)
	if worst < 3 {
		return 0
	}
	return min(time.Second<<min(worst-3, 5), 30*time.Second)
}

// Locked reports whether any of keys has failed too often within the
// window: its logins are refused, even with the right password, until
// the window has passed since its last failure. The delays alone cost a
// patient attacker nothing but time; the lockout caps the guesses at
// DefaultLockout per window and key. The price is that anyone can lock an
// account out for a while by guessing at it; the account's owner can
// still use another node.
func (l *Limiter) Locked(keys ...string) bool {
	return l.lockout > 0 && l.worst(keys) >= l.lockout
}

// worst is the highest failure count of keys still remembered.
func (l *Limiter) worst(keys []string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	worst := 0
	now := l.now()
	for _, k := range keys {
		if e, ok := l.entries[k]; ok && now.Sub(e.last) < forget && e.count > worst {
			worst = e.count
		}
	}
	return worst
}

// Fail records a failed login under every key.
func (l *Limiter) Fail(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range keys {
		e, ok := l.entries[k]
		if !ok || now.Sub(e.last) >= forget {
			e = &failures{}
			l.entries[k] = e
		}
		e.count++
		e.last = now
	}
	if len(l.entries) > 100000 {
		for k, e := range l.entries {
			if now.Sub(e.last) >= forget {
				delete(l.entries, k)
			}
		}
	}
}

// Succeed forgets the failures of keys.
func (l *Limiter) Succeed(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		delete(l.entries, k)
	}
}
