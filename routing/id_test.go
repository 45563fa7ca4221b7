package routing

import (
	"strings"
	"testing"
	"time"
)

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for i := 0; i < 10000; i++ {
		id := NewID()
		if len(id) != 26 || strings.Trim(id, crockford) != "" {
			t.Fatalf("bad id %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
		if i%1000 == 0 {
			if id[:10] < prev {
				t.Fatalf("ids not ordered by time: %s after %s", id, prev)
			}
			prev = id[:10]
			time.Sleep(2 * time.Millisecond)
		}
	}
}
