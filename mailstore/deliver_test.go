package mailstore

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestDeliverIdempotent(t *testing.T) {
	s, _ := openMem(t)
	uid1, dup, err := s.Deliver(alice, "Q1/alice@example.com", time.Now(), []byte("one"))
	check(t, err)
	if dup || uid1 != 1 {
		t.Fatalf("first deliver = %d dup=%v", uid1, dup)
	}
	uid2, dup, err := s.Deliver("ALICE@example.com", "Q1/alice@example.com", time.Now(), []byte("one, again"))
	check(t, err)
	if !dup || uid2 != uid1 {
		t.Fatalf("second deliver = %d dup=%v, want %d true", uid2, dup, uid1)
	}
	msgs := must[[]Message](t)(s.Messages(alice, "INBOX"))
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	if n, b := usage(t, s, alice); n != 1 || b != 3 {
		t.Errorf("usage %d/%d, want 1/3", n, b)
	}
	// A different key is a different delivery.
	uid3, dup, err := s.Deliver(alice, "Q2/alice@example.com", time.Now(), []byte("two"))
	check(t, err)
	if dup || uid3 != 2 {
		t.Errorf("third deliver = %d dup=%v", uid3, dup)
	}
	if _, _, err := s.Deliver(alice, "", time.Now(), nil); !errors.Is(err, ErrBadArgument) {
		t.Errorf("empty key: %v", err)
	}
	checkInvariants(t, s, alice)
}

func TestDeliverPersists(t *testing.T) {
	s, fs := openMem(t)
	var last uint32
	date := time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("", 2*3600))
	for i := range 3 {
		uid, _, err := s.Deliver(alice, fmt.Sprint("k", i), date, []byte("x"))
		check(t, err)
		if uid <= last {
			t.Fatalf("uid %d after %d", uid, last)
		}
		last = uid
	}
	inbox := must[MailboxInfo](t)(s.Mailbox(alice, "INBOX"))

	s = reopen(t, s, fs)
	after := must[MailboxInfo](t)(s.Mailbox(alice, "INBOX"))
	if after != inbox {
		t.Fatalf("INBOX changed across reopen: %+v -> %+v", inbox, after)
	}
	uid, _, err := s.Deliver(alice, "k3", date, []byte("x"))
	check(t, err)
	if uid != last+1 {
		t.Errorf("uid after reopen = %d, want %d", uid, last+1)
	}
	// The dedup record survives too.
	if uid, dup, err := s.Deliver(alice, "k0", date, []byte("x")); err != nil || !dup || uid != 1 {
		t.Errorf("redeliver k0 after reopen = %d %v %v", uid, dup, err)
	}
	m := must[Message](t)(s.Message(alice, "INBOX", 1))
	if !m.InternalDate.Equal(date) {
		t.Errorf("internal date %v, want %v", m.InternalDate, date)
	}
	if _, off := m.InternalDate.Zone(); off != 2*3600 {
		t.Errorf("internal date zone offset %d, want 7200", off)
	}
	checkInvariants(t, s, alice)
}

func TestDeliverConcurrent(t *testing.T) {
	s, _ := openMem(t)
	const workers, each = 20, 10
	var wg sync.WaitGroup
	uids := make(chan uint32, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				uid, dup, err := s.Deliver(alice, fmt.Sprintf("q%d-%d", w, i), time.Now(), []byte("0123456789"))
				if err != nil || dup {
					t.Errorf("deliver: %v dup=%v", err, dup)
					return
				}
				uids <- uid
			}
		})
	}
	wg.Wait()
	close(uids)
	seen := map[uint32]bool{}
	for uid := range uids {
		if seen[uid] {
			t.Errorf("uid %d handed out twice", uid)
		}
		seen[uid] = true
	}
	if len(seen) != workers*each {
		t.Errorf("%d distinct uids, want %d", len(seen), workers*each)
	}
	if n, b := usage(t, s, alice); n != workers*each || b != 10*workers*each {
		t.Errorf("usage %d/%d, want %d/%d", n, b, workers*each, 10*workers*each)
	}
	inbox := must[MailboxInfo](t)(s.Mailbox(alice, "INBOX"))
	if inbox.UIDNext != workers*each+1 || inbox.Messages != workers*each {
		t.Errorf("INBOX %+v", inbox)
	}
	checkInvariants(t, s, alice)
}

// TestDeliverSurvivesPowerCut keeps only what was synced (the crash clone
// of pebble v2's crashable MemFS, which replaced v1's NewStrictMem and
// ResetToSyncedState) and checks that an acknowledged Deliver is there.
func TestDeliverSurvivesPowerCut(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s, err := Open("db", Options{FS: fs})
	check(t, err)
	body := bytes.Repeat([]byte("power cut "), 300_000) // 3 MB: several chunks
	uid, _, err := s.Deliver(alice, "q1/alice", time.Now(), body)
	check(t, err)
	uid2, _, err := s.Deliver(alice, "q2/alice", time.Now(), []byte("small"))
	check(t, err)

	crashed := fs.CrashClone(vfs.CrashCloneCfg{}) // exactly the synced state
	check(t, s.Close())

	s = openFS(t, crashed)
	if got := must[[]byte](t)(s.Body(alice, "INBOX", uid)); !bytes.Equal(got, body) {
		t.Fatalf("body lost or damaged: %d bytes", len(got))
	}
	if got := must[[]byte](t)(s.Body(alice, "INBOX", uid2)); string(got) != "small" {
		t.Fatalf("second body = %q", got)
	}
	if u, dup, err := s.Deliver(alice, "q1/alice", time.Now(), body); err != nil || !dup || u != uid {
		t.Errorf("redeliver after crash = %d %v %v", u, dup, err)
	}
	if u, _, err := s.Deliver(alice, "q3/alice", time.Now(), body); err != nil || u != uid2+1 {
		t.Errorf("next uid after crash = %d %v, want %d", u, err, uid2+1)
	}
	checkInvariants(t, s, alice)
}

func TestDeliverWithinQuota(t *testing.T) {
	s, err := Open("m", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	body := make([]byte, 600)
	if _, _, err := s.DeliverWithin("q@x.test", "k1", time.Now(), body, 1000); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.DeliverWithin("q@x.test", "k2", time.Now(), body, 1000); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("second message: %v, want ErrOverQuota", err)
	}
	// A repeat of a delivered message is a duplicate, whatever the usage.
	if _, dup, err := s.DeliverWithin("q@x.test", "k1", time.Now(), body, 1000); err != nil || !dup {
		t.Fatalf("repeat: dup=%v err=%v", dup, err)
	}
	if n, b, _ := s.Usage("q@x.test"); n != 1 || b != 600 {
		t.Fatalf("usage %d %d", n, b)
	}
}

// TestFirstDeliveryCreatesOneInbox: the defaults created by a first
// delivery are seen by the rest of the same transaction.
func TestFirstDeliveryCreatesOneInbox(t *testing.T) {
	s, err := Open("m", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.Deliver("new@x.test", "k", time.Now(), []byte("Subject: a\r\n\r\nb\r\n")); err != nil {
		t.Fatal(err)
	}
	boxes, err := s.Mailboxes("new@x.test")
	if err != nil {
		t.Fatal(err)
	}
	inboxes := 0
	for _, b := range boxes {
		if b.Name == Inbox {
			inboxes++
			if b.Messages != 1 {
				t.Errorf("INBOX holds %d messages", b.Messages)
			}
		}
	}
	if inboxes != 1 || len(boxes) != 6 {
		t.Fatalf("mailboxes after a first delivery: %+v", boxes)
	}
}
