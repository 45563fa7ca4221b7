package mailstore

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func names(t testing.TB, s *Store, account string) []string {
	t.Helper()
	var out []string
	for _, b := range must[[]MailboxInfo](t)(s.Mailboxes(account)) {
		out = append(out, b.Name)
	}
	return out
}

func TestCreateMailbox(t *testing.T) {
	s, _ := openMem(t)
	tests := []struct {
		name, use string
		want      error
	}{
		{"Work", "", nil},
		{"Work/Projects", `\flagged`, nil},
		{"Work", "", ErrMailboxExists},
		{"INBOX", "", ErrMailboxExists},
		{"inbox", "", ErrMailboxExists},
		{"Sent", "", ErrMailboxExists},
		{"Inbox/Sub", "", nil},
		{"/Lead", "", ErrBadName},
		{"Trail/", "", ErrBadName},
		{"Star*", "", ErrBadName},
		{"Pct%", "", ErrBadName},
		{"Ctl\x01", "", ErrBadName},
		{"", "", ErrBadName},
		{"Ünïcødé", "", nil},
		{"Special", `\Important`, ErrBadSpecialUse},
	}
	for _, tt := range tests {
		if err := s.CreateMailbox(alice, tt.name, tt.use); !errors.Is(err, tt.want) {
			t.Errorf("CreateMailbox(%q, %q) = %v, want %v", tt.name, tt.use, err, tt.want)
		}
	}
	// The first CreateMailbox made the account and its defaults.
	want := []string{"INBOX", "Archive", "Drafts", "INBOX/Sub", "Junk", "Sent", "Trash", "Work", "Work/Projects", "Ünïcødé"}
	if got := names(t, s, alice); !slices.Equal(got, want) {
		t.Errorf("mailboxes %q, want %q", got, want)
	}
	p := must[MailboxInfo](t)(s.Mailbox(alice, "Work/Projects"))
	if p.SpecialUse != `\Flagged` || p.Subscribed {
		t.Errorf("Work/Projects = %+v", p)
	}
	if _, err := s.Mailbox(alice, "inbox/Sub"); err != nil {
		t.Errorf("INBOX prefix not case-insensitive: %v", err)
	}
	if _, err := s.Mailbox(alice, "work"); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("non-INBOX names must be case-sensitive: %v", err)
	}
	checkInvariants(t, s, alice)
}

func TestRenameMailbox(t *testing.T) {
	setup := func(t *testing.T) *Store {
		s, _ := openMem(t)
		for _, n := range []string{"Work", "Work/A", "Work/A/Deep", "Workshop", "INBOX/Child"} {
			check(t, s.CreateMailbox(alice, n, ""))
		}
		appendMsg(t, s, alice, "INBOX", []string{`\Seen`}, "in1")
		appendMsg(t, s, alice, "INBOX", nil, "in2")
		appendMsg(t, s, alice, "Work/A", nil, "wa")
		return s
	}
	tests := []struct {
		name     string
		from, to string
		want     error
		present  []string
		absent   []string
	}{
		{"with children", "Work", "Job", nil,
			[]string{"Job", "Job/A", "Job/A/Deep", "Workshop"}, []string{"Work", "Work/A", "Work/A/Deep"}},
		{"into hierarchy", "Work/A", "Other/A", nil,
			[]string{"Work", "Other/A", "Other/A/Deep"}, []string{"Work/A", "Work/A/Deep"}},
		{"up a level", "Work/A", "Work2", nil, []string{"Work2", "Work2/Deep"}, []string{"Work/A"}},
		{"onto parent name", "Work/A", "A", nil, []string{"A", "A/Deep", "Work"}, nil},
		{"target exists", "Work", "Workshop", ErrMailboxExists, nil, nil},
		{"child target exists", "Work/A", "Workshop", ErrMailboxExists, nil, nil},
		{"to INBOX", "Work", "inbox", ErrMailboxExists, nil, nil},
		{"to itself", "Work", "Work", ErrMailboxExists, nil, nil},
		{"into own child", "Work", "Work/A/B", ErrBadName, nil, nil},
		{"missing", "Nope", "Other", ErrNoMailbox, nil, nil},
		{"INBOX", "inbox", "Old", nil, []string{"INBOX", "Old", "INBOX/Child"}, []string{"Old/Child"}},
		{"INBOX below itself", "INBOX", "INBOX/Old", nil, []string{"INBOX", "INBOX/Old", "INBOX/Child"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := setup(t)
			before := map[string]MailboxInfo{}
			for _, b := range must[[]MailboxInfo](t)(s.Mailboxes(alice)) {
				before[b.Name] = b
			}
			err := s.RenameMailbox(alice, tt.from, tt.to)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Rename = %v, want %v", err, tt.want)
			}
			got := names(t, s, alice)
			for _, n := range tt.present {
				if !slices.Contains(got, n) {
					t.Errorf("%q missing from %q", n, got)
				}
			}
			for _, n := range tt.absent {
				if slices.Contains(got, n) {
					t.Errorf("%q still in %q", n, got)
				}
			}
			if tt.want != nil {
				if len(got) != len(before) {
					t.Errorf("failed rename changed mailboxes: %q", got)
				}
				return
			}
			moved := must[MailboxInfo](t)(s.Mailbox(alice, tt.to))
			old := before[must2v(normalizeMailbox(tt.from))]
			if moved.ID != old.ID || moved.UIDValidity != old.UIDValidity || moved.Messages != old.Messages || moved.UIDNext != old.UIDNext {
				t.Errorf("renamed mailbox %+v, was %+v", moved, old)
			}
			if old.Name == Inbox {
				inbox := must[MailboxInfo](t)(s.Mailbox(alice, "INBOX"))
				if inbox.Messages != 0 || inbox.ID == old.ID || inbox.UIDValidity <= old.UIDValidity || !inbox.Subscribed {
					t.Errorf("new INBOX %+v, old %+v", inbox, old)
				}
				if body := must[[]byte](t)(s.Body(alice, tt.to, 2)); string(body) != "in2" {
					t.Errorf("moved message body %q", body)
				}
				// Delivery continues into the new INBOX.
				uid, _, err := s.Deliver(alice, "after-rename", time.Now(), []byte("x"))
				check(t, err)
				if uid != 1 {
					t.Errorf("first uid in new INBOX = %d", uid)
				}
			}
			checkInvariants(t, s, alice)
		})
	}
}

// must2v unwraps a (value, error) pair whose error would be a bug in the
// test table itself.
func must2v[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestDeleteMailbox(t *testing.T) {
	s, _ := openMem(t)
	check(t, s.CreateMailbox(alice, "Work", ""))
	check(t, s.CreateMailbox(alice, "Work/Child", ""))
	appendMsg(t, s, alice, "Work", nil, "one")
	appendMsg(t, s, alice, "Work", nil, "two")
	appendMsg(t, s, alice, "INBOX", nil, "keep")
	// A copy shares the body; deleting the source must not lose it.
	_, _, dst, err := s.Copy(alice, "Work", []uint32{1}, "INBOX")
	check(t, err)
	old := must[MailboxInfo](t)(s.Mailbox(alice, "Work"))

	check(t, s.DeleteMailbox(alice, "Work"))
	if _, err := s.Mailbox(alice, "Work"); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("Work still there: %v", err)
	}
	if _, err := s.Mailbox(alice, "Work/Child"); err != nil {
		t.Errorf("child deleted with parent: %v", err)
	}
	if n, b := usage(t, s, alice); n != 2 || b != 7 {
		t.Errorf("usage %d/%d, want 2/7", n, b)
	}
	if body := must[[]byte](t)(s.Body(alice, "INBOX", dst[0])); string(body) != "one" {
		t.Errorf("copied body %q", body)
	}
	checkInvariants(t, s, alice)

	for _, n := range []string{"INBOX", "inbox"} {
		if err := s.DeleteMailbox(alice, n); !errors.Is(err, ErrDeleteInbox) {
			t.Errorf("DeleteMailbox(%q) = %v", n, err)
		}
	}
	if err := s.DeleteMailbox(alice, "Work"); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("second delete = %v", err)
	}

	// Re-creating the name gets a larger UIDVALIDITY, even in the same
	// second or with the clock set back.
	s.now = func() time.Time { return time.Unix(1000, 0) }
	check(t, s.CreateMailbox(alice, "Work", ""))
	if again := must[MailboxInfo](t)(s.Mailbox(alice, "Work")); again.UIDValidity <= old.UIDValidity || again.UIDNext != 1 || again.Messages != 0 {
		t.Errorf("re-created %+v, old %+v", again, old)
	}
	checkInvariants(t, s, alice)
}

func TestSetSubscribed(t *testing.T) {
	s, _ := openMem(t)
	check(t, s.CreateMailbox(alice, "Work", ""))
	for _, on := range []bool{true, true, false} {
		check(t, s.SetSubscribed(alice, "Work", on))
		if got := must[MailboxInfo](t)(s.Mailbox(alice, "Work")).Subscribed; got != on {
			t.Errorf("Subscribed = %v, want %v", got, on)
		}
	}
	if err := s.SetSubscribed(alice, "Nope", true); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("SetSubscribed(Nope) = %v", err)
	}
}

func TestUIDValidityFromClock(t *testing.T) {
	s, _ := openMem(t)
	now := time.Unix(2_000_000_000, 0)
	s.now = func() time.Time { return now }
	check(t, s.CreateMailbox(alice, "A", "")) // defaults get 2e9..2e9+5
	a := must[MailboxInfo](t)(s.Mailbox(alice, "A")).UIDValidity
	if a != 2_000_000_006 {
		t.Errorf("UIDVALIDITY %d, want 2000000006 (clock plus clamping)", a)
	}
	now = now.Add(time.Hour)
	check(t, s.CreateMailbox(alice, "B", ""))
	if b := must[MailboxInfo](t)(s.Mailbox(alice, "B")).UIDValidity; b != uint32(now.Unix()) {
		t.Errorf("UIDVALIDITY %d, want clock %d", b, now.Unix())
	}
}
