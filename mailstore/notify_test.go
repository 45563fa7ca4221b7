package mailstore

import (
	"testing"
	"time"
)

func TestSubscribe(t *testing.T) {
	s, _ := openMem(t)
	ch, cancel := s.Subscribe("Alice@Example.com")
	other, cancelOther := s.Subscribe("bob@example.com")
	defer cancelOther()

	received := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		case <-time.After(10 * time.Millisecond):
			return false
		}
	}
	_, _, err := s.Deliver(alice, "k1", time.Now(), []byte("x"))
	check(t, err)
	if !received(ch) {
		t.Fatal("no signal after Deliver")
	}
	if received(other) {
		t.Error("other account signalled")
	}
	// Several changes with nobody reading coalesce into one signal and
	// never block the writer.
	for _, k := range []string{"k2", "k3", "k4"} {
		_, _, err := s.Deliver(alice, k, time.Now(), []byte("x"))
		check(t, err)
	}
	if !received(ch) || received(ch) {
		t.Error("want exactly one pending signal")
	}
	// Operations that change nothing do not signal.
	_, _, err = s.Deliver(alice, "k1", time.Now(), []byte("x"))
	check(t, err)
	check(t, s.EnsureAccount(alice))
	if received(ch) {
		t.Error("signal without a change")
	}
	check(t, s.SetSubscribed(alice, "Junk", false))
	if !received(ch) {
		t.Error("no signal after SetSubscribed")
	}
	cancel()
	cancel() // idempotent
	if _, ok := <-ch; ok {
		t.Error("channel not closed by cancel")
	}
	_, _, err = s.Deliver(alice, "k5", time.Now(), []byte("x")) // must not panic
	check(t, err)
}
