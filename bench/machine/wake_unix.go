//go:build unix

package machine

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"time"
)

// wakes ping-pongs a byte between two OS threads over blocking pipes: the
// kernel puts each thread to sleep in read and wakes it on the other's
// write, as perf bench sched pipe does. (Go's own pipes would go through
// its network poller, which adds its own hand-offs.)
func wakes(n int) (rtt time.Duration, err error) {
	var ab, ba [2]int
	if err := syscall.Pipe(ab[:]); err != nil {
		return 0, fmt.Errorf("pipe: %w", err)
	}
	if err := syscall.Pipe(ba[:]); err != nil {
		syscall.Close(ab[0])
		syscall.Close(ab[1])
		return 0, fmt.Errorf("pipe: %w", err)
	}
	echoed := make(chan error, 1)
	// Each side closes its own ends when it is done, so that the other
	// reads end of file instead of waiting forever, and never closes a
	// number the other may still use (a closed number is reused at once).
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer syscall.Close(ba[1])
		defer syscall.Close(ab[0])
		var b [1]byte
		for range n {
			if k, err := syscall.Read(ab[0], b[:]); err != nil || k == 0 {
				echoed <- err // k == 0: the measuring side stopped early
				return
			}
			if _, err := syscall.Write(ba[1], b[:]); err != nil {
				echoed <- err
				return
			}
		}
		echoed <- nil
	}()
	defer func() {
		syscall.Close(ab[1])
		if echoErr := <-echoed; echoErr != nil { // the cause, if it stopped first
			rtt, err = 0, fmt.Errorf("pipe echo: %w", echoErr)
		}
		syscall.Close(ba[0])
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
		k, err := syscall.Read(ba[0], b[:])
		if err != nil {
			return 0, fmt.Errorf("pipe read: %w", err)
		}
		if k == 0 {
			return 0, errors.New("pipe read: the echo thread stopped")
		}
		times[i] = time.Since(t)
	}
	return quantile(times, 0.5), nil
}
