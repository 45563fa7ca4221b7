package mailstore

import (
	"strings"
	"sync"
)

// notifier fans out "something changed" signals per account. Signals carry
// no detail: a woken IMAP IDLE session re-reads what it shows.
type notifier struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

// Subscribe returns a channel that receives a value whenever anything in
// the account changes, and a func that cancels the subscription and closes
// the channel. The channel has a buffer of one and sends never block, so a
// slow reader sees one pending signal standing for any number of changes.
func (s *Store) Subscribe(account string) (<-chan struct{}, func()) {
	// Subscribe cannot fail, so an invalid name is only lowercased; it
	// simply never fires.
	if a, err := normalizeAccount(account); err == nil {
		account = a
	} else {
		account = strings.ToLower(account)
	}
	return s.subs.subscribe(account)
}

func (n *notifier) subscribe(account string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	if n.subs == nil {
		n.subs = map[string]map[chan struct{}]struct{}{}
	}
	if n.subs[account] == nil {
		n.subs[account] = map[chan struct{}]struct{}{}
	}
	n.subs[account][ch] = struct{}{}
	n.mu.Unlock()

	var once sync.Once
	cancel := func() {
		once.Do(func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			delete(n.subs[account], ch)
			if len(n.subs[account]) == 0 {
				delete(n.subs, account)
			}
			close(ch) // under mu, so signal never sends on a closed channel
		})
	}
	return ch, cancel
}

func (n *notifier) signal(account string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.subs[account] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
