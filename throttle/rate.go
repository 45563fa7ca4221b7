package throttle

import (
	"sync"
	"time"
)

// Rate limits events per key over a sliding hour, such as messages sent
// by one account. It keeps two counts per key, this hour's and the last
// one's, and weighs the last by how much of it is still inside the
// window: an estimate that is exact for steady senders and never lets a
// burst at the turn of the hour through twice.
type Rate struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	start time.Time // beginning of the current bucket
	cur   map[string]int
	prev  map[string]int
}

// NewRate allows max events per key and hour; zero or less allows all.
func NewRate(max int) *Rate {
	return &Rate{max: max, window: time.Hour, now: time.Now, cur: map[string]int{}, prev: map[string]int{}}
}

// Allow reports whether key may have one more event now.
func (r *Rate) Allow(key string) bool {
	if r == nil || r.max <= 0 {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	r.rotate(now)
	weight := 1 - float64(now.Sub(r.start))/float64(r.window)
	return float64(r.cur[key])+float64(r.prev[key])*weight < float64(r.max)
}

// Add records n events of key.
func (r *Rate) Add(key string, n int) {
	if r == nil || r.max <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rotate(r.now())
	r.cur[key] += n
}

// rotate starts new buckets when the current one is over.
func (r *Rate) rotate(now time.Time) {
	if r.start.IsZero() {
		r.start = now
	}
	switch d := now.Sub(r.start); {
	case d < r.window:
	case d < 2*r.window:
		r.prev, r.cur = r.cur, map[string]int{}
		r.start = r.start.Add(r.window)
	default:
		r.prev, r.cur = map[string]int{}, map[string]int{}
		r.start = now
	}
}
