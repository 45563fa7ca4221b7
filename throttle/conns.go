package throttle

import "sync"

// Conns counts open connections per client address, so that one host
// cannot take all of a listener's connection slots. A zero or negative
// limit allows any number.
type Conns struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

// NewConns allows max concurrent connections per address.
func NewConns(max int) *Conns {
	return &Conns{max: max, n: map[string]int{}}
}

// Acquire takes a slot for addr, reporting false when addr already has
// the maximum. A true result is paired with one Release.
func (c *Conns) Acquire(addr string) bool {
	if c == nil || c.max <= 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[addr] >= c.max {
		return false
	}
	c.n[addr]++
	return true
}

// Release gives back a slot taken by Acquire.
func (c *Conns) Release(addr string) {
	if c == nil || c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[addr] <= 1 {
		delete(c.n, addr) // the map holds only addresses with connections
		return
	}
	c.n[addr]--
}
