package smtpd

import (
	"sync"
	"time"
)

// authLimiter slows down password guessing: every failed login makes the
// next attempt from the same client IP, and for the same account, wait
// longer. go-smtp counts nothing itself.
type authLimiter struct {
	mu      sync.Mutex
	entries map[string]*authFailures
	now     func() time.Time
}

type authFailures struct {
	count int
	last  time.Time
}

// authForget is how long a key's failures are remembered.
const authForget = 15 * time.Minute

func newAuthLimiter() *authLimiter {
	return &authLimiter{entries: map[string]*authFailures{}, now: time.Now}
}

// delay is how long to wait before answering the next attempt from any of
// keys: nothing for the first three failures, then doubling from one
// second, capped at 30 s.
func (l *authLimiter) delay(keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	worst := 0
	for _, k := range keys {
		if e, ok := l.entries[k]; ok && l.now().Sub(e.last) < authForget && e.count > worst {
			worst = e.count
		}
	}
	if worst < 3 {
		return 0
	}
	return min(time.Second<<min(worst-3, 5), 30*time.Second)
}

func (l *authLimiter) fail(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range keys {
		e, ok := l.entries[k]
		if !ok || now.Sub(e.last) >= authForget {
			e = &authFailures{}
			l.entries[k] = e
		}
		e.count++
		e.last = now
	}
	if len(l.entries) > 100000 {
		for k, e := range l.entries {
			if now.Sub(e.last) >= authForget {
				delete(l.entries, k)
			}
		}
	}
}

func (l *authLimiter) succeed(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		delete(l.entries, k)
	}
}
