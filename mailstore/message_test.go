package mailstore

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestAppendRoundTrip(t *testing.T) {
	s, fs := openMem(t)
	check(t, s.EnsureAccount(alice))
	rng := rand.NewChaCha8([32]byte{1})
	random := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	date := time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("", -5*3600))
	tests := []struct {
		name  string
		box   string
		flags []string
		body  []byte
	}{
		{"empty", "INBOX", nil, []byte{}},
		{"small", "INBOX", []string{`\Seen`, "$Label1"}, []byte("Subject: hi\r\n\r\nhello\r\n")},
		{"exactly one chunk", "Drafts", []string{`\Draft`}, random(bodyChunkSize)},
		{"one chunk plus one", "Drafts", nil, random(bodyChunkSize + 1)},
		{"5 MiB", "Archive", []string{`\Seen`, `\Recent`}, random(5 << 20)},
	}
	uids := map[string]uint32{}
	for _, tt := range tests {
		uv, uid, err := s.Append(alice, tt.box, tt.flags, date, tt.body)
		check(t, err)
		box := must[MailboxInfo](t)(s.Mailbox(alice, tt.box))
		if uv != box.UIDValidity || uid != box.UIDNext-1 {
			t.Errorf("%s: Append = %d/%d, mailbox %+v", tt.name, uv, uid, box)
		}
		uids[tt.name] = uid
	}
	checkInvariants(t, s, alice)
	s = reopen(t, s, fs)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uid := uids[tt.name]
			got := must[[]byte](t)(s.Body(alice, tt.box, uid))
			if !bytes.Equal(got, tt.body) {
				t.Errorf("body: %d bytes, want %d", len(got), len(tt.body))
			}
			m := must[Message](t)(s.Message(alice, tt.box, uid))
			wantFlags := slices.DeleteFunc(slices.Clone(tt.flags), func(f string) bool { return f == `\Recent` })
			if m.UID != uid || m.Size != int64(len(tt.body)) || !m.InternalDate.Equal(date) || !slices.Equal(m.Flags, wantFlags) || m.ModSeq == 0 {
				t.Errorf("message %+v", m)
			}
			msgs := must[[]Message](t)(s.Messages(alice, tt.box))
			if i := slices.IndexFunc(msgs, func(x Message) bool { return x.UID == uid }); i < 0 || msgs[i].Size != m.Size {
				t.Errorf("Messages() lacks uid %d: %+v", uid, msgs)
			}
		})
	}
	drafts := must[MailboxInfo](t)(s.Mailbox(alice, "Drafts"))
	if drafts.Messages != 2 || drafts.Unseen != 2 || drafts.Bytes != 2*bodyChunkSize+1 {
		t.Errorf("Drafts %+v", drafts)
	}
	checkInvariants(t, s, alice)
}

func TestAppendErrors(t *testing.T) {
	s, _ := openMem(t)
	check(t, s.EnsureAccount(alice))
	tests := []struct {
		name    string
		account string
		box     string
		flags   []string
		want    error
	}{
		{"no mailbox", alice, "Nope", nil, ErrNoMailbox},
		{"unknown account", "bob@example.com", "INBOX", nil, ErrNoMailbox},
		{"bad name", alice, "a//b", nil, ErrBadName},
		{"bad flag", alice, "INBOX", []string{"two words"}, ErrBadFlag},
		{"bad system flag", alice, "INBOX", []string{`\*`}, ErrBadFlag},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := s.Append(tt.account, tt.box, tt.flags, time.Now(), []byte("x")); !errors.Is(err, tt.want) {
				t.Errorf("Append = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := s.Message(alice, "INBOX", 42); !errors.Is(err, ErrNoMessage) {
		t.Errorf("Message(42) = %v", err)
	}
	if _, err := s.Body(alice, "INBOX", 42); !errors.Is(err, ErrNoMessage) {
		t.Errorf("Body(42) = %v", err)
	}
	if _, err := s.Messages(alice, "Nope"); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("Messages(Nope) = %v", err)
	}
	checkInvariants(t, s, alice)
}

func TestStoreFlags(t *testing.T) {
	s, _ := openMem(t)
	check(t, s.EnsureAccount(alice))
	uid := appendMsg(t, s, alice, "INBOX", []string{"$Work"}, "m")
	other := appendMsg(t, s, alice, "INBOX", nil, "n")

	// Each step runs against uid; modseq must grow exactly when flags change.
	steps := []struct {
		op      FlagOp
		flags   []string
		want    []string
		changed bool
		unseen  int
	}{
		{FlagsAdd, []string{`\Seen`}, []string{"$Work", `\Seen`}, true, 1},
		{FlagsAdd, []string{`\seen`}, []string{"$Work", `\Seen`}, false, 1},
		{FlagsAdd, []string{`\Flagged`, `\Recent`}, []string{"$Work", `\Seen`, `\Flagged`}, true, 1},
		{FlagsRemove, []string{`\SEEN`, "$work"}, []string{`\Flagged`}, true, 2},
		{FlagsRemove, []string{`\Answered`}, []string{`\Flagged`}, false, 2},
		{FlagsSet, []string{`\Answered`, `\Seen`}, []string{`\Answered`, `\Seen`}, true, 1},
		{FlagsSet, []string{`\seen`, `\answered`}, []string{`\Answered`, `\Seen`}, false, 1},
		{FlagsSet, nil, nil, true, 2},
	}
	prev := must[MailboxInfo](t)(s.Mailbox(alice, "INBOX")).HighestModSeq
	for i, st := range steps {
		updated, failed, err := s.StoreFlags(alice, "INBOX", []uint32{uid, 999}, st.op, st.flags, 0)
		check(t, err)
		box := must[MailboxInfo](t)(s.Mailbox(alice, "INBOX"))
		if len(updated) != 1 || len(failed) != 0 {
			t.Fatalf("step %d: updated %+v failed %v", i, updated, failed)
		}
		m := updated[0]
		if !sameFlags(m.Flags, st.want) || len(m.Flags) != len(st.want) {
			t.Errorf("step %d: flags %q, want %q", i, m.Flags, st.want)
		}
		if st.changed != (box.HighestModSeq > prev) || (st.changed && m.ModSeq != box.HighestModSeq) {
			t.Errorf("step %d: changed=%v but modseq %d, highest %d -> %d", i, st.changed, m.ModSeq, prev, box.HighestModSeq)
		}
		if box.Unseen != st.unseen {
			t.Errorf("step %d: unseen %d, want %d", i, box.Unseen, st.unseen)
		}
		if stored := must[Message](t)(s.Message(alice, "INBOX", uid)); stored.ModSeq != m.ModSeq || !sameFlags(stored.Flags, m.Flags) {
			t.Errorf("step %d: stored %+v, returned %+v", i, stored, m)
		}
		prev = box.HighestModSeq
		checkInvariants(t, s, alice)
	}

	// One call changing several messages gives them one new modseq.
	updated, _, err := s.StoreFlags(alice, "INBOX", []uint32{other, uid, uid}, FlagsAdd, []string{`\Deleted`}, 0)
	check(t, err)
	if len(updated) != 2 || updated[0].UID != uid || updated[1].UID != other || updated[0].ModSeq != updated[1].ModSeq {
		t.Errorf("multi-message store: %+v", updated)
	}
	if _, _, err := s.StoreFlags(alice, "INBOX", []uint32{uid}, 0, nil, 0); !errors.Is(err, ErrBadArgument) {
		t.Errorf("zero FlagOp: %v", err)
	}
}

func TestUnchangedSince(t *testing.T) {
	s, _ := openMem(t)
	check(t, s.EnsureAccount(alice))
	a := appendMsg(t, s, alice, "INBOX", nil, "a")
	b := appendMsg(t, s, alice, "INBOX", nil, "b")
	ms := must[Message](t)(s.Message(alice, "INBOX", a)).ModSeq
	// Touch b so its modseq moves past what the client saw for a.
	_, _, err := s.StoreFlags(alice, "INBOX", []uint32{b}, FlagsAdd, []string{`\Flagged`}, 0)
	check(t, err)

	updated, failed, err := s.StoreFlags(alice, "INBOX", []uint32{a, b}, FlagsAdd, []string{`\Seen`}, ms+1)
	check(t, err)
	if !slices.Equal(failed, []uint32{b}) || len(updated) != 1 || updated[0].UID != a {
		t.Fatalf("updated %+v failed %v", updated, failed)
	}
	if m := must[Message](t)(s.Message(alice, "INBOX", b)); hasFlag(m.Flags, `\Seen`) {
		t.Errorf("b changed despite UNCHANGEDSINCE: %+v", m)
	}
	// Now a's modseq is newer too: both fail, nothing changes.
	before := must[MailboxInfo](t)(s.Mailbox(alice, "INBOX")).HighestModSeq
	updated, failed, err = s.StoreFlags(alice, "INBOX", []uint32{a, b}, FlagsRemove, []string{`\Seen`}, ms)
	check(t, err)
	if len(updated) != 0 || !slices.Equal(failed, []uint32{a, b}) {
		t.Errorf("updated %+v failed %v", updated, failed)
	}
	if after := must[MailboxInfo](t)(s.Mailbox(alice, "INBOX")).HighestModSeq; after != before {
		t.Errorf("HIGHESTMODSEQ moved %d -> %d on a failed store", before, after)
	}
}

func TestExpunge(t *testing.T) {
	tests := []struct {
		name    string
		deleted []int // indexes of messages flagged \Deleted
		uids    []int // indexes passed to Expunge; nil = all
		want    []int
	}{
		{"nothing deleted", nil, nil, nil},
		{"all deleted ones", []int{0, 2, 3}, nil, []int{0, 2, 3}},
		{"uid subset", []int{0, 2, 3}, []int{2, 1, 3}, []int{2, 3}},
		{"empty subset", []int{0}, []int{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openMem(t)
			check(t, s.EnsureAccount(alice))
			var uids []uint32
			for range 5 {
				uids = append(uids, appendMsg(t, s, alice, "INBOX", nil, "body"))
			}
			pick := func(idx []int) []uint32 {
				if idx == nil {
					return nil
				}
				out := []uint32{}
				for _, i := range idx {
					out = append(out, uids[i])
				}
				return out
			}
			if len(tt.deleted) > 0 {
				_, _, err := s.StoreFlags(alice, "INBOX", pick(tt.deleted), FlagsAdd, []string{`\deleted`}, 0)
				check(t, err)
			}
			before := must[MailboxInfo](t)(s.Mailbox(alice, "INBOX"))
			got := must[[]uint32](t)(s.Expunge(alice, "INBOX", pick(tt.uids)))
			want := pick(tt.want)
			if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Fatalf("expunged %v, want %v", got, want)
			}
			after := must[MailboxInfo](t)(s.Mailbox(alice, "INBOX"))
			if after.Messages != 5-len(want) || (len(want) > 0) != (after.HighestModSeq > before.HighestModSeq) {
				t.Errorf("mailbox before %+v after %+v", before, after)
			}
			for _, uid := range want {
				if _, err := s.Body(alice, "INBOX", uid); !errors.Is(err, ErrNoMessage) {
					t.Errorf("uid %d still readable: %v", uid, err)
				}
			}
			checkInvariants(t, s, alice)
		})
	}
}
