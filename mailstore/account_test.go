package mailstore

import (
	"errors"
	"testing"
	"time"
)

func TestEnsureAccount(t *testing.T) {
	s, _ := openMem(t)
	check(t, s.EnsureAccount("Alice@Example.COM"))
	boxes := must[[]MailboxInfo](t)(s.Mailboxes(alice))
	want := []struct{ name, use string }{
		{"INBOX", ""}, {"Archive", `\Archive`}, {"Drafts", `\Drafts`},
		{"Junk", `\Junk`}, {"Sent", `\Sent`}, {"Trash", `\Trash`},
	}
	if len(boxes) != len(want) {
		t.Fatalf("got %d mailboxes: %+v", len(boxes), boxes)
	}
	seen := map[uint32]bool{}
	for i, w := range want {
		b := boxes[i]
		if b.Name != w.name || b.SpecialUse != w.use || !b.Subscribed || b.UIDNext != 1 || b.Messages != 0 || b.HighestModSeq == 0 {
			t.Errorf("mailbox %d = %+v, want %s %s subscribed", i, b, w.name, w.use)
		}
		if seen[b.UIDValidity] {
			t.Errorf("UIDVALIDITY %d reused", b.UIDValidity)
		}
		seen[b.UIDValidity] = true
	}

	// Idempotent: nothing changes on a second call.
	check(t, s.EnsureAccount(alice))
	again := must[[]MailboxInfo](t)(s.Mailboxes(alice))
	for i := range boxes {
		if boxes[i] != again[i] {
			t.Errorf("second EnsureAccount changed %+v to %+v", boxes[i], again[i])
		}
	}
	checkInvariants(t, s, alice)
}

func TestEnsureAccountRestoresMissingDefaults(t *testing.T) {
	s, _ := openMem(t)
	check(t, s.EnsureAccount(alice))
	check(t, s.DeleteMailbox(alice, "Junk"))
	check(t, s.RenameMailbox(alice, "Sent", "Sent Items"))
	check(t, s.EnsureAccount(alice))
	names := map[string]string{}
	for _, b := range must[[]MailboxInfo](t)(s.Mailboxes(alice)) {
		names[b.Name] = b.SpecialUse
	}
	if names["Junk"] != `\Junk` {
		t.Errorf("Junk not re-created: %v", names)
	}
	if _, ok := names["Sent"]; ok || names["Sent Items"] != `\Sent` {
		t.Errorf("renamed Sent folder duplicated: %v", names)
	}
}

func TestAccountValidation(t *testing.T) {
	s, _ := openMem(t)
	for _, name := range []string{"", "nobody", "a b@example.com", "a@example.com\n", "\xff@x"} {
		if err := s.EnsureAccount(name); !errors.Is(err, ErrBadAccount) {
			t.Errorf("EnsureAccount(%q) = %v, want ErrBadAccount", name, err)
		}
	}
}

func TestDeleteAccount(t *testing.T) {
	s, _ := openMem(t)
	const bob = "bob@example.com"
	for i, acct := range []string{alice, bob} {
		for j := range 3 {
			_, _, err := s.Deliver(acct, string(rune('a'+i*3+j)), time.Now(), []byte("body"))
			check(t, err)
		}
	}
	check(t, s.CreateMailbox(alice, "Work", ""))
	before := must[MailboxInfo](t)(s.Mailbox(alice, "INBOX"))

	check(t, s.DeleteAccount(alice))
	check(t, s.DeleteAccount(alice)) // unknown account: no error
	if boxes := must[[]MailboxInfo](t)(s.Mailboxes(alice)); len(boxes) != 0 {
		t.Errorf("mailboxes left: %+v", boxes)
	}
	for _, table := range accountTables {
		scanRaw(t, s, accountPrefix(table, alice), func(k, v []byte) { t.Errorf("key left: %x", k) })
	}
	if n, b := usage(t, s, alice); n != 0 || b != 0 {
		t.Errorf("usage after delete = %d/%d", n, b)
	}
	if n, _ := usage(t, s, bob); n != 3 {
		t.Errorf("bob lost messages: %d", n)
	}
	checkInvariants(t, s, bob)

	// A re-created account starts over, above the old UIDVALIDITY even
	// if the clock went backwards, and its old delivery keys are gone.
	s.now = func() time.Time { return time.Unix(1000, 0) }
	uid, dup, err := s.Deliver(alice, "a", time.Now(), []byte("again"))
	check(t, err)
	if uid != 1 || dup {
		t.Errorf("redeliver after delete = %d dup=%v, want 1 false", uid, dup)
	}
	after := must[MailboxInfo](t)(s.Mailbox(alice, "INBOX"))
	if after.UIDValidity <= before.UIDValidity {
		t.Errorf("UIDVALIDITY %d after re-create, was %d", after.UIDValidity, before.UIDValidity)
	}
	checkInvariants(t, s, alice)
}

func TestDeleteAccountFloorPersists(t *testing.T) {
	s, fs := openMem(t)
	check(t, s.EnsureAccount(alice))
	old := must[MailboxInfo](t)(s.Mailbox(alice, "Archive")).UIDValidity
	check(t, s.DeleteAccount(alice))
	s = reopen(t, s, fs)
	s.now = func() time.Time { return time.Unix(1000, 0) }
	check(t, s.EnsureAccount(alice))
	for _, b := range must[[]MailboxInfo](t)(s.Mailboxes(alice)) {
		if b.UIDValidity <= old {
			t.Errorf("%s UIDVALIDITY %d <= pre-delete %d", b.Name, b.UIDValidity, old)
		}
	}
}

func usage(t testing.TB, s *Store, account string) (int, int64) {
	t.Helper()
	n, b, err := s.Usage(account)
	check(t, err)
	return n, b
}
