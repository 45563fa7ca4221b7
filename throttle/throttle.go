// Package throttle slows down password guessing for every protocol that
// takes a password (SMTP AUTH, IMAP, POP3): each failed login makes the next
// attempt from the same client IP, and for the same account, wait longer.
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
}

type failures struct {
	count int
	last  time.Time
}

// forget is how long a key's failures are remembered.
const forget = 15 * time.Minute

// New returns an empty limiter.
func New() *Limiter {
	return &Limiter{entries: map[string]*failures{}, now: time.Now}
}

// Delay is how long to wait before answering the next attempt from any of
// keys: nothing for the first three failures, then doubling from one
// second, capped at 30 s.
func (l *Limiter) Delay(keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	worst := 0
	for _, k := range keys {
		if e, ok := l.entries[k]; ok && l.now().Sub(e.last) < forget && e.count > worst {
			worst = e.count
		}
	}
	if worst < 3 {
		return 0
	}
	return min(time.Second<<min(worst-3, 5), 30*time.Second)
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
