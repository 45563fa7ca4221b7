package mailstore

import (
	"errors"
	"slices"
	"testing"
)

func TestCopyMove(t *testing.T) {
	tests := []struct {
		name     string
		move     bool
		from, to string
		uids     []uint32 // of the five source messages, uids 1..5
		wantSrc  []uint32
		wantDst  []uint32 // destination already holds two messages
	}{
		{"copy", false, "INBOX", "Archive", []uint32{4, 2, 2, 9}, []uint32{2, 4}, []uint32{3, 4}},
		{"move", true, "INBOX", "Archive", []uint32{5, 1, 3}, []uint32{1, 3, 5}, []uint32{3, 4, 5}},
		{"copy none", false, "INBOX", "Archive", []uint32{42}, nil, nil},
		{"move none", true, "INBOX", "Archive", nil, nil, nil},
		{"copy within", false, "INBOX", "INBOX", []uint32{1, 2}, []uint32{1, 2}, []uint32{6, 7}},
		{"move within", true, "INBOX", "INBOX", []uint32{1, 2}, []uint32{1, 2}, []uint32{6, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openMem(t)
			check(t, s.EnsureAccount(alice))
			bodies := map[uint32]string{}
			for i := range 5 {
				body := string(rune('a' + i))
				bodies[appendMsg(t, s, alice, "INBOX", []string{"$k" + body}, body)] = body
			}
			if tt.to != tt.from {
				appendMsg(t, s, alice, tt.to, nil, "old1")
				appendMsg(t, s, alice, tt.to, nil, "old2")
			}
			srcBefore := must[MailboxInfo](t)(s.Mailbox(alice, tt.from))
			dstBefore := must[MailboxInfo](t)(s.Mailbox(alice, tt.to))
			op := s.Copy
			if tt.move {
				op = s.Move
			}
			uv, src, dst, err := op(alice, tt.from, tt.uids, tt.to)
			check(t, err)
			if uv != dstBefore.UIDValidity || !slices.Equal(src, tt.wantSrc) || !slices.Equal(dst, tt.wantDst) {
				t.Fatalf("got %d %v %v, want %d %v %v", uv, src, dst, dstBefore.UIDValidity, tt.wantSrc, tt.wantDst)
			}
			dstAfter := must[MailboxInfo](t)(s.Mailbox(alice, tt.to))
			for i, uid := range dst {
				m := must[Message](t)(s.Message(alice, tt.to, uid))
				if !slices.Equal(m.Flags, []string{"$k" + bodies[src[i]]}) || m.ModSeq != dstBefore.HighestModSeq+1 {
					t.Errorf("copied message %+v", m)
				}
				if b := must[[]byte](t)(s.Body(alice, tt.to, uid)); string(b) != bodies[src[i]] {
					t.Errorf("copied body %q, want %q", b, bodies[src[i]])
				}
			}
			for _, uid := range src {
				_, err := s.Message(alice, tt.from, uid)
				if tt.move && !errors.Is(err, ErrNoMessage) {
					t.Errorf("moved uid %d still in source: %v", uid, err)
				}
				if !tt.move && err != nil {
					t.Errorf("copied uid %d gone from source: %v", uid, err)
				}
			}
			srcAfter := must[MailboxInfo](t)(s.Mailbox(alice, tt.from))
			if tt.move && len(src) > 0 && srcAfter.HighestModSeq <= srcBefore.HighestModSeq {
				t.Errorf("source HIGHESTMODSEQ not bumped: %d -> %d", srcBefore.HighestModSeq, srcAfter.HighestModSeq)
			}
			if len(src) == 0 && dstAfter != dstBefore {
				t.Errorf("empty %s changed destination: %+v", tt.name, dstAfter)
			}
			wantMsgs := 7
			if tt.from == tt.to {
				wantMsgs = 5
			}
			if !tt.move {
				wantMsgs += len(src)
			}
			if n, _ := usage(t, s, alice); n != wantMsgs {
				t.Errorf("usage %d messages, want %d", n, wantMsgs)
			}
			checkInvariants(t, s, alice)
		})
	}
}

func TestCopySharesBodies(t *testing.T) {
	s, _ := openMem(t)
	check(t, s.EnsureAccount(alice))
	uid := appendMsg(t, s, alice, "INBOX", nil, "shared")
	_, _, d1, err := s.Copy(alice, "INBOX", []uint32{uid}, "Archive")
	check(t, err)
	_, _, d2, err := s.Copy(alice, "Archive", d1, "Trash")
	check(t, err)
	chunks := 0
	scanRaw(t, s, accountPrefix(tableBody, alice), func(k, v []byte) { chunks++ })
	if chunks != 1 {
		t.Errorf("%d body chunks stored for three copies, want 1", chunks)
	}
	// Expunge the copies one by one; the body lives until the last goes.
	for _, x := range []struct {
		box string
		uid uint32
	}{{"INBOX", uid}, {"Archive", d1[0]}} {
		_, _, err := s.StoreFlags(alice, x.box, []uint32{x.uid}, FlagsAdd, []string{`\Deleted`}, 0)
		check(t, err)
		must[[]uint32](t)(s.Expunge(alice, x.box, nil))
		checkInvariants(t, s, alice)
	}
	if b := must[[]byte](t)(s.Body(alice, "Trash", d2[0])); string(b) != "shared" {
		t.Errorf("body %q", b)
	}
	_, _, err = s.StoreFlags(alice, "Trash", d2, FlagsAdd, []string{`\Deleted`}, 0)
	check(t, err)
	must[[]uint32](t)(s.Expunge(alice, "Trash", nil))
	scanRaw(t, s, accountPrefix(tableBody, alice), func(k, v []byte) { t.Errorf("body chunk left: %x", k) })
	checkInvariants(t, s, alice)
}

func TestCopyErrors(t *testing.T) {
	s, _ := openMem(t)
	check(t, s.EnsureAccount(alice))
	appendMsg(t, s, alice, "INBOX", nil, "x")
	for _, tt := range []struct{ from, to string }{{"INBOX", "Nope"}, {"Nope", "INBOX"}} {
		if _, _, _, err := s.Copy(alice, tt.from, []uint32{1}, tt.to); !errors.Is(err, ErrNoMailbox) {
			t.Errorf("Copy %s->%s = %v", tt.from, tt.to, err)
		}
		if _, _, _, err := s.Move(alice, tt.from, []uint32{1}, tt.to); !errors.Is(err, ErrNoMailbox) {
			t.Errorf("Move %s->%s = %v", tt.from, tt.to, err)
		}
	}
	checkInvariants(t, s, alice)
}
