package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// openT opens a spool in dir on fs and closes it at the end of the test,
// failing the test if Close reports an error (a leaked iterator, say).
func openT(tb testing.TB, fs vfs.FS, dir string) *Spool {
	tb.Helper()
	s, err := Open(dir, Options{FS: fs})
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() {
		if s.db != nil {
			if err := s.Close(); err != nil {
				tb.Errorf("close: %v", err)
			}
		}
	})
	return s
}

func reopenT(tb testing.TB, s *Spool, fs vfs.FS, dir string) *Spool {
	tb.Helper()
	if err := s.Close(); err != nil {
		tb.Fatalf("close: %v", err)
	}
	s.db = nil
	return openT(tb, fs, dir)
}

// randomBody returns n bytes that do not compress, like an attachment.
func randomBody(n int, seed uint64) []byte {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b) // never fails
	return b
}

func checkStats(t *testing.T, s *Spool, count int, size int64) {
	t.Helper()
	if c, b := s.Stats(); c != count || b != size {
		t.Errorf("Stats = %d, %d; want %d, %d", c, b, count, size)
	}
}

func TestPutGet(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"small", 100},
		{"one chunk exactly", chunkSize},
		{"one chunk and a byte", chunkSize + 1},
		{"30 MiB", 30 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewMem()
			s := openT(t, fs, "spool")
			body := randomBody(tt.size, uint64(tt.size))
			if err := s.Put("msg-1", body); err != nil {
				t.Fatalf("Put: %v", err)
			}
			check := func(s *Spool) {
				t.Helper()
				got, err := s.Get("msg-1")
				if err != nil || !bytes.Equal(got, body) {
					t.Fatalf("Get = %d bytes, %v; want %d bytes", len(got), err, len(body))
				}
				if got == nil {
					t.Fatal("Get returned nil for a stored body")
				}
				if !s.Has("msg-1") {
					t.Fatal("Has = false")
				}
				checkStats(t, s, 1, int64(tt.size))
			}
			check(s)
			check(reopenT(t, s, fs, "spool"))
		})
	}
}

func TestPutFrom(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		max     int64
		tooBig  bool
		readErr error
	}{
		{name: "small", size: 10, max: 100},
		{name: "exactly max", size: 100, max: 100},
		{name: "one over max", size: 101, max: 100, tooBig: true},
		{name: "empty", size: 0, max: 100},
		{name: "zero max, empty body", size: 0, max: 0},
		{name: "zero max, a byte", size: 1, max: 0, tooBig: true},
		{name: "multi-chunk", size: 3*chunkSize + 7, max: 25 << 20},
		{name: "25 MiB limit, 26 MiB body", size: 26 << 20, max: 25 << 20, tooBig: true},
		{name: "reader fails", size: 10, max: 100, readErr: errors.New("connection reset")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openT(t, vfs.NewMem(), "spool")
			body := randomBody(tt.size, 7)
			var r io.Reader = bytes.NewReader(body)
			if tt.readErr != nil {
				r = io.MultiReader(r, &failingReader{tt.readErr})
			}
			// iotest-style one-byte-at-a-time reads would be slow at 26 MiB;
			// a short-read reader still exercises the chunk loop.
			n, err := s.PutFrom("m", &shortReader{r}, tt.max)
			switch {
			case tt.readErr != nil:
				if !errors.Is(err, tt.readErr) {
					t.Fatalf("PutFrom error = %v, want %v", err, tt.readErr)
				}
			case tt.tooBig:
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("PutFrom error = %v, want ErrTooLarge", err)
				}
				if n != tt.max+1 {
					t.Errorf("PutFrom read %d bytes, want max+1 = %d", n, tt.max+1)
				}
			default:
				if err != nil || n != int64(tt.size) {
					t.Fatalf("PutFrom = %d, %v; want %d", n, err, tt.size)
				}
				got, err := s.Get("m")
				if err != nil || !bytes.Equal(got, body) {
					t.Fatalf("Get = %d bytes, %v", len(got), err)
				}
				checkStats(t, s, 1, int64(tt.size))
				return
			}
			// A failed PutFrom stores nothing.
			if s.Has("m") {
				t.Fatal("a failed PutFrom left a body")
			}
			checkStats(t, s, 0, 0)
		})
	}
}

type failingReader struct{ err error }

func (f *failingReader) Read([]byte) (int, error) { return 0, f.err }

// shortReader returns at most 1000 bytes per Read, like a network stream.
type shortReader struct{ r io.Reader }

func (s *shortReader) Read(p []byte) (int, error) {
	return s.r.Read(p[:min(len(p), 1000)])
}

func TestPutIdempotentAndReplace(t *testing.T) {
	big, small := randomBody(3*chunkSize+5, 1), []byte("short")
	tests := []struct {
		name   string
		bodies [][]byte // Put in order under one id
	}{
		{"same body twice", [][]byte{small, small}},
		{"same big body twice", [][]byte{big, big}},
		{"shrink drops old chunks", [][]byte{big, small}},
		{"grow", [][]byte{small, big}},
		{"to empty", [][]byte{big, {}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openT(t, vfs.NewMem(), "spool")
			for _, b := range tt.bodies {
				if err := s.Put("id", b); err != nil {
					t.Fatal(err)
				}
			}
			want := tt.bodies[len(tt.bodies)-1]
			if got, err := s.Get("id"); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("Get = %d bytes, %v; want %d", len(got), err, len(want))
			}
			checkStats(t, s, 1, int64(len(want)))
			// Delete must leave no chunk behind, whatever was put before.
			if err := s.Delete("id"); err != nil {
				t.Fatal(err)
			}
			if n := countKeys(t, s); n != 0 {
				t.Fatalf("%d keys left after Delete", n)
			}
		})
	}
}

func countKeys(t *testing.T, s *Spool) int {
	t.Helper()
	it, err := s.db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestGetMissingAndDelete(t *testing.T) {
	s := openT(t, vfs.NewMem(), "spool")
	if err := s.Put("a", []byte("alpha")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("abc", []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("b", randomBody(2*chunkSize, 2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("b"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		id   string
	}{
		{"never stored", "zzz"},
		{"deleted", "b"},
		{"prefix of one stored id, extension of another", "ab"},
		{"empty id", ""},
		{"id with NUL", "a\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Get(tt.id); err != ErrNotFound {
				t.Errorf("Get error = %v, want ErrNotFound", err)
			}
			if s.Has(tt.id) {
				t.Error("Has = true")
			}
			if err := s.Delete(tt.id); err != nil {
				t.Errorf("Delete of an absent id: %v", err)
			}
		})
	}
	checkStats(t, s, 2, 5+3)
}

func TestInvalidIDs(t *testing.T) {
	s := openT(t, vfs.NewMem(), "spool")
	for _, id := range []string{"", "a\x00b", strings.Repeat("x", maxIDLen+1)} {
		if err := s.Put(id, []byte("x")); err == nil {
			t.Errorf("Put(%q) succeeded", id)
		}
		if _, err := s.PutFrom(id, strings.NewReader("x"), 10); err == nil {
			t.Errorf("PutFrom(%q) succeeded", id)
		}
	}
	if err := s.Put(strings.Repeat("x", maxIDLen), []byte("x")); err != nil {
		t.Errorf("Put with a %d-byte id: %v", maxIDLen, err)
	}
}

func TestList(t *testing.T) {
	s := openT(t, vfs.NewMem(), "spool")
	// Stored out of order, and with ids that are prefixes of each other.
	ids := []string{"m2", "m10", "a", "m1", "m1x", "z"}
	before := time.Now()
	for i, id := range ids {
		if err := s.Put(id, make([]byte, i*10)); err != nil {
			t.Fatal(err)
		}
	}
	after := time.Now()

	tests := []struct {
		name   string
		stopAt int // fn returns false on this call (1-based); 0 never
		want   []string
	}{
		{"all in id order", 0, []string{"a", "m1", "m10", "m1x", "m2", "z"}},
		{"stop after first", 1, []string{"a"}},
		{"stop after three", 3, []string{"a", "m1", "m10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := s.List(func(id string, stored time.Time, size int64) bool {
				got = append(got, id)
				if stored.Before(before) || stored.After(after) {
					t.Errorf("%s stored at %v, not between %v and %v", id, stored, before, after)
				}
				for i, want := range ids {
					if want == id && size != int64(i*10) {
						t.Errorf("%s size %d, want %d", id, size, i*10)
					}
				}
				return len(got) != tt.stopAt
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("List = %v, want %v", got, tt.want)
			}
		})
	}

	// fn may delete as it goes (a sweep).
	err := s.List(func(id string, _ time.Time, _ int64) bool {
		if err := s.Delete(id); err != nil {
			t.Error(err)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	checkStats(t, s, 0, 0)
}

func TestReopenOnDisk(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, nil, dir)
	bodies := map[string][]byte{
		"small": []byte("hello"),
		"large": randomBody(5*chunkSize+3, 3),
		"gone":  []byte("deleted before reopen"),
	}
	var stored time.Time
	for id, b := range bodies {
		if err := s.Put(id, b); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.List(func(id string, at time.Time, _ int64) bool {
		if id == "small" {
			stored = at
		}
		return true
	})
	if err := s.Delete("gone"); err != nil {
		t.Fatal(err)
	}
	delete(bodies, "gone")

	s = reopenT(t, s, nil, dir)
	for id, want := range bodies {
		if got, err := s.Get(id); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Get(%s) after reopen = %d bytes, %v", id, len(got), err)
		}
	}
	if s.Has("gone") {
		t.Fatal("deleted body came back")
	}
	checkStats(t, s, 2, int64(len(bodies["small"])+len(bodies["large"])))
	_ = s.List(func(id string, at time.Time, _ int64) bool {
		if id == "small" && !at.Equal(stored) {
			t.Errorf("stored time after reopen = %v, want %v", at, stored)
		}
		return true
	})
}

// TestPowerCut opens a copy of the filesystem holding only what was fsynced,
// as after a power cut. (pebble v2 replaced NewStrictMem and
// ResetToSyncedState with NewCrashableMem and CrashClone.)
func TestPowerCut(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := openT(t, fs, "spool")
	want := map[string][]byte{}
	for i := range 20 {
		id := fmt.Sprintf("m%02d", i)
		want[id] = randomBody(i*chunkSize/8, uint64(i))
		if i%2 == 0 {
			if err := s.Put(id, want[id]); err != nil {
				t.Fatal(err)
			}
		} else if _, err := s.PutFrom(id, bytes.NewReader(want[id]), 25<<20); err != nil {
			t.Fatal(err)
		}
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{}) // synced data only

	c := openT(t, crashed, "spool")
	for id, b := range want {
		if got, err := c.Get(id); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("Get(%s) after power cut = %d bytes, %v; want %d", id, len(got), err, len(b))
		}
	}
	if n, _ := c.Stats(); n != len(want) {
		t.Fatalf("Stats count after power cut = %d, want %d", n, len(want))
	}
}

// TestConcurrentPuts has 50 goroutines put, read back and delete at once,
// some on shared ids; run with -race.
func TestConcurrentPuts(t *testing.T) {
	s := openT(t, vfs.NewMem(), "spool")
	const workers, each = 50, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%02d-%02d", w, i)
				body := randomBody(100+w*i*37, uint64(w*each+i))
				if err := s.Put(id, body); err != nil {
					t.Error(err)
					return
				}
				// Every worker also retries one shared id with the same body.
				if err := s.Put("shared", []byte("same body")); err != nil {
					t.Error(err)
					return
				}
				got, err := s.Get(id)
				if err != nil || !bytes.Equal(got, body) {
					t.Errorf("Get(%s) = %d bytes, %v", id, len(got), err)
					return
				}
				if i%2 == 1 {
					if err := s.Delete(id); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()

	var n int
	var total int64
	if err := s.List(func(_ string, _ time.Time, size int64) bool {
		n++
		total += size
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if n != workers*each/2+1 {
		t.Fatalf("List saw %d bodies, want %d", n, workers*each/2+1)
	}
	checkStats(t, s, n, total)
}

// BenchmarkPut measures synced Puts on the real filesystem from many
// goroutines, as from many SMTP sessions; pebble's commit pipeline lets
// concurrent Puts share an fsync.
func BenchmarkPut(b *testing.B) {
	for _, size := range []int{1 << 10, 32 << 10} {
		for _, par := range []int{1, 16} { // goroutines per CPU
			b.Run(fmt.Sprintf("size=%dKiB/par=%d", size>>10, par), func(b *testing.B) {
				s := openT(b, nil, b.TempDir())
				body := randomBody(size, 1)
				var next atomic.Int64
				b.SetBytes(int64(size))
				b.SetParallelism(par)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := s.Put(fmt.Sprintf("msg-%d", next.Add(1)), body); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
			})
		}
	}
}
