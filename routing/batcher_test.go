package routing

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"clustermail/mailstore"
)

func TestBatcherGroupsAndAnswersEach(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	gate := make(chan struct{})
	first := true
	b := newBatcher(func(account string, ds []mailstore.Delivery) ([]mailstore.DeliveryResult, error) {
		mu.Lock()
		sizes = append(sizes, len(ds))
		wait := first
		first = false
		mu.Unlock()
		if wait {
			<-gate // hold the first commit so the others pile up
		}
		out := make([]mailstore.DeliveryResult, len(ds))
		for i, d := range ds {
			var uid uint32
			fmt.Sscanf(d.Key, "k%d", &uid)
			out[i] = mailstore.DeliveryResult{UID: uid}
			if uid == 7 {
				out[i].Err = mailstore.ErrOverQuota
			}
		}
		return out, nil
	}, 1)
	var wg sync.WaitGroup
	deliver := func(i int) {
		defer wg.Done()
		uid, _, err := b.Deliver("a@x.test", mailstore.Delivery{Key: fmt.Sprintf("k%d", i)})
		if i == 7 {
			if !errors.Is(err, mailstore.ErrOverQuota) {
				t.Errorf("k7: %v", err)
			}
			return
		}
		if err != nil || uid != uint32(i) {
			t.Errorf("k%d: uid %d err %v", i, uid, err)
		}
	}
	wg.Add(1)
	go deliver(0)
	for {
		mu.Lock()
		started := len(sizes) == 1
		mu.Unlock()
		if started {
			break
		}
	}
	for i := 1; i <= 20; i++ {
		wg.Add(1)
		go deliver(i)
	}
	// Let every waiting delivery queue up behind the held commit.
	for {
		b.mu.Lock()
		n := len(b.accounts["a@x.test"].pending)
		b.mu.Unlock()
		if n == 20 {
			break
		}
	}
	close(gate)
	wg.Wait()
	if len(sizes) != 2 || sizes[0] != 1 || sizes[1] != 20 {
		t.Fatalf("commit sizes %v, want [1 20]", sizes)
	}
	// The runner forgets the account once idle (it may still be finishing).
	for {
		b.mu.Lock()
		n := len(b.accounts)
		b.mu.Unlock()
		if n == 0 {
			break
		}
	}
}

// TestBatcherLingerKeepsOrder: deliveries to an idle mailbox that arrive
// within the linger share one commit, stored in queue id order whatever
// order they arrived in; the linger ends as soon as company is complete.
func TestBatcherLingerKeepsOrder(t *testing.T) {
	var mu sync.Mutex
	var batches [][]string
	b := newBatcher(func(account string, ds []mailstore.Delivery) ([]mailstore.DeliveryResult, error) {
		var keys []string
		for _, d := range ds {
			keys = append(keys, d.Key)
		}
		mu.Lock()
		batches = append(batches, keys)
		mu.Unlock()
		return make([]mailstore.DeliveryResult, len(ds)), nil
	}, 3)
	b.linger = time.Hour // only the third delivery can end it
	var wg sync.WaitGroup
	for i, k := range []string{"01C/a", "01A/a", "01B/a"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := b.Deliver("a@x.test", mailstore.Delivery{Key: k}); err != nil {
				t.Error(err)
			}
		}()
		for deadline := time.Now().Add(5 * time.Second); i < 2; time.Sleep(time.Millisecond) {
			n := 0
			b.mu.Lock()
			if q := b.accounts["a@x.test"]; q != nil {
				n = len(q.pending)
			}
			b.mu.Unlock()
			if n == i+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %d not queued", i)
			}
		}
	}
	wg.Wait()
	if len(batches) != 1 || strings.Join(batches[0], " ") != "01A/a 01B/a 01C/a" {
		t.Fatalf("batches %v, want one in id order", batches)
	}
}
