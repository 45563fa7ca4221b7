package mailrpc

import (
	"bufio"
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Subscribe is mailstore.Store.Subscribe for an account on the owner: the
// channel (buffer of one, sends never block) receives a value whenever
// anything in the account changes there, and cancel stops the
// subscription and closes the channel.
//
// The signals come over a long-lived stream from the owner. If it breaks
// (the owner restarts, the network drops, heartbeats stop), Subscribe
// reconnects with backoff until cancelled and then signals once, since
// changes may have been missed meanwhile. Subscribe returns once the owner
// has registered the subscription, so a change made after it returns is
// signalled; if the owner cannot be reached within Timeout it returns
// anyway and keeps trying, signalling once connected.
func (c *Client) Subscribe(account string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	if (&args{Account: account}).check() != nil {
		// Like the local store, an account that cannot exist never fires.
		var once sync.Once
		return ch, func() { once.Do(func() { close(ch) }) }
	}
	ctx, stop := context.WithCancel(context.Background())
	first := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch) // after the last send, so none can hit a closed channel
		c.watch(ctx, account, ch, sync.OnceFunc(func() { close(first) }))
	}()
	<-first
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			stop()
			<-done
		})
	}
}

// watch keeps a stream open until ctx ends. settled is called once the
// first attempt has either registered or failed.
func (c *Client) watch(ctx context.Context, account string, ch chan struct{}, settled func()) {
	defer settled()
	notify := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	missed := false // a stream broke or never started: changes may have gone unseen
	backoff := c.backoffMin
	for {
		up := c.stream(ctx, account, func() {
			settled()
			if missed {
				notify()
				missed = false
			}
		}, notify)
		settled()
		if ctx.Err() != nil {
			return
		}
		missed = true
		// Only a stream that lasted resets the backoff, so an owner that
		// accepts and drops at once is not hammered.
		if up >= c.backoffMax {
			backoff = c.backoffMin
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, c.backoffMax)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// stream runs one Subscribe request until it breaks, goes silent or ctx
// ends. ready is called when the owner has registered the subscription,
// changed for each signal. It returns how long the stream was registered.
func (c *Client) stream(ctx context.Context, account string, ready, changed func()) time.Duration {
	ctx, abort := context.WithCancel(ctx)
	defer abort()
	// The watchdog bounds the wait for "ready", then the silence between
	// lines: a stream whose owner vanished without a FIN would otherwise
	// look alive forever.
	watchdog := time.AfterFunc(c.timeout(), abort)
	defer watchdog.Stop()
	resp, err := c.post(ctx, "Subscribe", &args{Account: account}, nil, false)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var since time.Time
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		switch sc.Text() {
		case lineReady:
			if since.IsZero() {
				since = time.Now()
				ready()
			}
		case lineChange:
			if !since.IsZero() {
				changed()
			}
		}
		// Any line, including heartbeats and lines a newer owner may add,
		// proves the stream alive.
		if !since.IsZero() {
			watchdog.Reset(c.idle)
		}
	}
	if since.IsZero() {
		return 0
	}
	return time.Since(since)
}
