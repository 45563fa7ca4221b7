package routing

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
)

// ErrNoRoom means the node's disk is too full to take a message: a full
// disk makes Pebble stop the process, so the node refuses mail (452 4.3.1)
// well before, as Postfix does with queue_minfree.
var ErrNoRoom = errors.New("insufficient system storage")

// room caches the free space of the data dir for a second: statfs per
// message would be cheap, but not free.
type room struct {
	dir     string
	minFree int64

	mu      sync.Mutex
	checked time.Time
	free    int64
	err     error
}

func (r *room) freeBytes() (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < time.Second {
		return r.free, r.err
	}
	var st syscall.Statfs_t
	r.err = syscall.Statfs(r.dir, &st)
	r.free = int64(st.Bavail) * int64(st.Bsize)
	r.checked = time.Now()
	return r.free, r.err
}

// Room reports whether the node can take a message of about size bytes
// (0 when unknown): the free space must stay above the floor with room
// for one and a half times the message, as during DATA it is stored, and
// then copied into a mailbox.
func (r *Router) Room(size int64) error {
	if r.room.dir == "" || r.room.minFree <= 0 {
		return nil
	}
	free, err := r.room.freeBytes()
	if err != nil {
		return nil // cannot tell: let the write itself decide
	}
	if need := r.room.minFree + size*3/2; free < need {
		return fmt.Errorf("%w: %d bytes free, %d needed", ErrNoRoom, free, need)
	}
	return nil
}
