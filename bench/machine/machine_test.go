package machine

import (
	"testing"
	"time"
)

func TestMeasure(t *testing.T) {
	r, err := Measure(Options{Dir: t.TempDir(), Syncs: 20, Wakes: 200, HashMB: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.CPUs < 1 || r.FsyncP50 <= 0 || r.FsyncP99 < r.FsyncP50 || r.WakeRTT <= 0 || r.HashMBps <= 0 {
		t.Fatalf("implausible measurement: %+v", r)
	}
}

func TestMeasureRefusesMissingDir(t *testing.T) {
	if _, err := Measure(Options{Dir: t.TempDir() + "/missing", Syncs: 1}); err == nil {
		t.Fatal("no error for a directory that does not exist")
	}
}

func TestQuantile(t *testing.T) {
	d := []time.Duration{5, 1, 4, 2, 3}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0, 1}, {0.5, 3}, {0.99, 5}, {1, 5}} {
		if got := quantile(d, c.q); got != c.want {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if d[0] != 5 {
		t.Error("quantile sorted its argument in place")
	}
}
