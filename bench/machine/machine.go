// Package machine measures what bounds a mail server on the machine it
// runs on, so that benchmark figures taken on different machines can be
// put side by side: how long a small synchronous append takes, how long a
// thread takes to wake another and be woken back, and how fast one CPU
// hashes.
//
// The second matters more than it seems. On one 2-CPU virtual machine the
// three-node figures came out at half of those of another of the same
// size; that machine took 27 µs for a thread wake-up round trip (perf
// bench sched pipe), where bare hardware takes a few. A message through
// three nodes costs dozens of such wake-ups, and at a moderate pace few of
// them are shared by a group.
package machine

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"
)

// Result is one measurement of the machine.
type Result struct {
	CPUs int `json:"cpus"`
	// FsyncP50 and FsyncP99: a 4 KiB append to a file followed by its
	// fsync, as a write-ahead log does for every commit group.
	FsyncP50 time.Duration `json:"fsync_p50_ns"`
	FsyncP99 time.Duration `json:"fsync_p99_ns"`
	// WakeRTT is the median round trip of one byte between two threads
	// over two pipes: two sleeps and two wake-ups, the unit of a hand-off
	// between goroutines that are not running.
	WakeRTT time.Duration `json:"wake_rtt_ns"`
	// HashMBps is SHA-256 over 64 MiB on one CPU, in MB/s: the speed of
	// a CPU, to tell a slow CPU from slow wake-ups.
	HashMBps float64 `json:"sha256_mbps"`
}

// Options sizes a measurement; zero values take the defaults.
type Options struct {
	Dir    string // where the fsync file goes (the data disk); default the temp dir
	Syncs  int    // fsyncs measured; default 500
	Wakes  int    // wake-up round trips measured; default 20 000
	HashMB int    // MiB hashed; default 64
}

// Measure runs the three measurements one after the other; it takes a few
// seconds on a quiet machine.
func Measure(o Options) (Result, error) {
	if o.Dir == "" {
		o.Dir = os.TempDir()
	}
	if o.Syncs <= 0 {
		o.Syncs = 500
	}
	if o.Wakes <= 0 {
		o.Wakes = 20000
	}
	if o.HashMB <= 0 {
		o.HashMB = 64
	}
	r := Result{CPUs: runtime.NumCPU()}
	var err error
	if r.FsyncP50, r.FsyncP99, err = fsyncs(o.Dir, o.Syncs); err != nil {
		return r, err
	}
	if r.WakeRTT, err = wakes(o.Wakes); err != nil {
		return r, err
	}
	r.HashMBps = hashRate(o.HashMB)
	return r, nil
}

func fsyncs(dir string, n int) (p50, p99 time.Duration, err error) {
	f, err := os.CreateTemp(dir, "clustermail-bench-machine-*")
	if err != nil {
		return 0, 0, fmt.Errorf("fsync test file in %s: %w", dir, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 4096)
	times := make([]time.Duration, n)
	for i := range times {
		t := time.Now()
		if _, err := f.Write(block); err != nil {
			return 0, 0, fmt.Errorf("write %s: %w", filepath.Base(f.Name()), err)
		}
		if err := f.Sync(); err != nil {
			return 0, 0, fmt.Errorf("fsync %s: %w", filepath.Base(f.Name()), err)
		}
		times[i] = time.Since(t)
	}
	return quantile(times, 0.5), quantile(times, 0.99), nil
}

func hashRate(mb int) float64 {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	h := sha256.New()
	t := time.Now()
	for range mb {
		h.Write(buf)
	}
	h.Sum(nil)
	return float64(mb) * (1 << 20) / 1e6 / time.Since(t).Seconds()
}

func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
