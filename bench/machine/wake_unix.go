//go:build unix

package machine

import (
	"fmt"
	"runtime"
	"syscall"
	"time"
)

// wakes ping-pongs a byte between two OS threads over blocking pipes: the
// kernel puts each thread to sleep in read and wakes it on the other's
// write, as perf bench sched pipe does. (Go's own pipes would go through
// its network poller, which adds its own hand-offs.)
func wakes(n int) (time.Duration, error) {
	var ab, ba [2]int
	if err := syscall.Pipe(ab[:]); err != nil {
		return 0, fmt.Errorf("pipe: %w", err)
	}
	defer syscall.Close(ab[0])
	defer syscall.Close(ab[1])
	if err := syscall.Pipe(ba[:]); err != nil {
		return 0, fmt.Errorf("pipe: %w", err)
	}
	defer syscall.Close(ba[0])
	defer syscall.Close(ba[1])
	echoed := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var b [1]byte
		for range n {
			if _, err := syscall.Read(ab[0], b[:]); err != nil {
				echoed <- err
				return
			}
			if _, err := syscall.Write(ba[1], b[:]); err != nil {
				echoed <- err
				return
			}
		}
		echoed <- nil
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	times := make([]time.Duration, n)
	var b [1]byte
	for i := range times {
		t := time.Now()
		if _, err := syscall.Write(ab[1], b[:]); err != nil {
			return 0, fmt.Errorf("pipe write: %w", err)
		}
		if _, err := syscall.Read(ba[0], b[:]); err != nil {
			return 0, fmt.Errorf("pipe read: %w", err)
		}
		times[i] = time.Since(t)
	}
	if err := <-echoed; err != nil {
		return 0, fmt.Errorf("pipe echo: %w", err)
	}
	return quantile(times, 0.5), nil
}
