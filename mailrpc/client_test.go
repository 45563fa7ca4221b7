package mailrpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"clustermail/mailstore"
	"clustermail/peer"
)

// The Store interface must list every method of *mailstore.Store but
// Close, so a method added to mailstore is not silently missing remotely.
// DeliverMany is the owner's own delivery path (routing's batcher), never
// called across nodes.
func TestStoreInterfaceCoversMailstore(t *testing.T) {
	want := map[string]bool{}
	st := reflect.TypeFor[*mailstore.Store]()
	for i := range st.NumMethod() {
		if name := st.Method(i).Name; name != "Close" && name != "DeliverMany" {
			want[name] = true
		}
	}
	it := reflect.TypeFor[Store]()
	for i := range it.NumMethod() {
		delete(want, it.Method(i).Name)
	}
	if len(want) > 0 {
		t.Fatalf("Store lacks methods of *mailstore.Store: %v", want)
	}
}

// Every sentinel error of mailstore must have a wire code, or the client
// would turn it into a plain error.
func TestSentinelsCoverMailstore(t *testing.T) {
	files, err := filepath.Glob("../mailstore/*.go")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, sp := range g.Specs {
				for _, n := range sp.(*ast.ValueSpec).Names {
					if strings.HasPrefix(n.Name, "Err") {
						names = append(names, n.Name)
					}
				}
			}
		}
	}
	if len(names) != len(sentinels) {
		t.Fatalf("mailstore declares %d sentinels %v, the wire maps %d", len(names), names, len(sentinels))
	}
}

// TestRoundTrip runs one table of operations against a local store and,
// through a Client, against a served one, and expects the same results
// and the same sentinel errors.
func TestRoundTrip(t *testing.T) {
	local := openStore(t)
	remote, _, client := served(t)

	// An offset with seconds and a zero offset both must survive the trip.
	d1 := time.Date(2024, 3, 1, 12, 0, 0, 123456789, time.FixedZone("LMT", 5*3600+30*60+15))
	d2 := time.Date(2023, 12, 24, 18, 30, 0, 0, time.UTC)
	big := make([]byte, 5<<20)
	for i := range big {
		big[i] = "abcdefghijklmnopqrstuvwxyz\r\n"[i%28]
	}
	msg := []byte("Subject: hi\r\n\r\nhello\r\n")
	all := func(vs ...any) []any { return vs }
	// uvOK reports whether a returned UIDVALIDITY is the mailbox's; the
	// values themselves come from the clock and differ between stores.
	uvOK := func(s Store, box string, uv uint32, err error) bool {
		if err != nil {
			return uv == 0
		}
		info, ierr := s.Mailbox(alice, box)
		return ierr == nil && info.UIDValidity == uv
	}

	ops := []struct {
		name string
		do   func(s Store) ([]any, error)
	}{
		{"EnsureAccount", func(s Store) ([]any, error) { return nil, s.EnsureAccount(alice) }},
		{"EnsureAccount again", func(s Store) ([]any, error) { return nil, s.EnsureAccount(alice) }},
		{"EnsureAccount bad", func(s Store) ([]any, error) { return nil, s.EnsureAccount("not an address") }},
		{"EnsureAccount bad UTF-8", func(s Store) ([]any, error) { return nil, s.EnsureAccount("\xff@example.com") }},
		{"Mailboxes", func(s Store) ([]any, error) { v, err := s.Mailboxes(alice); return all(v), err }},
		{"Mailboxes unknown", func(s Store) ([]any, error) { v, err := s.Mailboxes("nobody@example.com"); return all(v), err }},
		{"Mailbox", func(s Store) ([]any, error) { v, err := s.Mailbox(alice, "inbox"); return all(v), err }},
		{"Mailbox missing", func(s Store) ([]any, error) { v, err := s.Mailbox(alice, "Nope"); return all(v), err }},
		{"Mailbox bad name", func(s Store) ([]any, error) { v, err := s.Mailbox(alice, "a//b"); return all(v), err }},
		{"Mailbox bad UTF-8 name", func(s Store) ([]any, error) { v, err := s.Mailbox(alice, "\xfe"); return all(v), err }},
		{"CreateMailbox", func(s Store) ([]any, error) { return nil, s.CreateMailbox(alice, "Work", "") }},
		{"CreateMailbox exists", func(s Store) ([]any, error) { return nil, s.CreateMailbox(alice, "work", "") }},
		{"CreateMailbox special", func(s Store) ([]any, error) { return nil, s.CreateMailbox(alice, "Starred", `\flagged`) }},
		{"CreateMailbox bad special", func(s Store) ([]any, error) { return nil, s.CreateMailbox(alice, "X", `\Bogus`) }},
		{"CreateMailbox bad name", func(s Store) ([]any, error) { return nil, s.CreateMailbox(alice, "a*", "") }},
		{"CreateMailbox Ünicode", func(s Store) ([]any, error) { return nil, s.CreateMailbox(alice, "Reisen/Zürich", "") }},
		{"RenameMailbox", func(s Store) ([]any, error) { return nil, s.RenameMailbox(alice, "Work", "Projects") }},
		{"RenameMailbox missing", func(s Store) ([]any, error) { return nil, s.RenameMailbox(alice, "Nope", "Other") }},
		{"RenameMailbox onto existing", func(s Store) ([]any, error) { return nil, s.RenameMailbox(alice, "Projects", "Sent") }},
		{"SetSubscribed", func(s Store) ([]any, error) { return nil, s.SetSubscribed(alice, "Projects", true) }},
		{"SetSubscribed off", func(s Store) ([]any, error) { return nil, s.SetSubscribed(alice, "Sent", false) }},
		{"SetSubscribed missing", func(s Store) ([]any, error) { return nil, s.SetSubscribed(alice, "Nope", true) }},
		{"DeleteMailbox INBOX", func(s Store) ([]any, error) { return nil, s.DeleteMailbox(alice, "INBOX") }},
		{"Append", func(s Store) ([]any, error) {
			uv, uid, err := s.Append(alice, "INBOX", []string{`\Seen`, "$Label"}, d1, msg)
			return all(uid, uvOK(s, "INBOX", uv, err)), err
		}},
		{"Append nil flags", func(s Store) ([]any, error) {
			uv, uid, err := s.Append(alice, "INBOX", nil, d2, []byte("second"))
			return all(uid, uvOK(s, "INBOX", uv, err)), err
		}},
		{"Append empty body", func(s Store) ([]any, error) {
			uv, uid, err := s.Append(alice, "INBOX", []string{}, d2, nil)
			return all(uid, uvOK(s, "INBOX", uv, err)), err
		}},
		{"Append bad flag", func(s Store) ([]any, error) {
			_, uid, err := s.Append(alice, "INBOX", []string{"bad(flag"}, d1, msg)
			return all(uid), err
		}},
		{"Append bad UTF-8 flag", func(s Store) ([]any, error) {
			_, uid, err := s.Append(alice, "INBOX", []string{"\xff"}, d1, msg)
			return all(uid), err
		}},
		{"Append missing mailbox", func(s Store) ([]any, error) {
			_, uid, err := s.Append(alice, "Nope", nil, d1, msg)
			return all(uid), err
		}},
		{"Append 5 MiB", func(s Store) ([]any, error) {
			uv, uid, err := s.Append(alice, "Projects", []string{`\Flagged`}, d2, big)
			return all(uid, uvOK(s, "Projects", uv, err)), err
		}},
		{"Deliver", func(s Store) ([]any, error) {
			uid, dup, err := s.Deliver(alice, "Q1/alice@example.com", d1, msg)
			return all(uid, dup), err
		}},
		{"Deliver duplicate", func(s Store) ([]any, error) {
			uid, dup, err := s.Deliver(alice, "Q1/alice@example.com", d2, []byte("other"))
			return all(uid, dup), err
		}},
		{"Deliver binary key", func(s Store) ([]any, error) {
			uid, dup, err := s.Deliver(alice, "Q2/\xff\x00", d1, msg)
			return all(uid, dup), err
		}},
		{"Deliver binary key again", func(s Store) ([]any, error) {
			uid, dup, err := s.Deliver(alice, "Q2/\xff\x00", d1, msg)
			return all(uid, dup), err
		}},
		{"Deliver similar key", func(s Store) ([]any, error) {
			uid, dup, err := s.Deliver(alice, "Q2/\ufffd\x00", d1, msg)
			return all(uid, dup), err
		}},
		{"Deliver empty key", func(s Store) ([]any, error) {
			uid, dup, err := s.Deliver(alice, "", d1, msg)
			return all(uid, dup), err
		}},
		{"Deliver new account", func(s Store) ([]any, error) {
			uid, dup, err := s.Deliver(bob, "Q3/bob@example.com", d2, msg)
			return all(uid, dup), err
		}},
		{"DeliverWithin", func(s Store) ([]any, error) {
			uid, dup, err := s.DeliverWithin(alice, "Q4/alice@example.com", d2, msg, 1<<30)
			return all(uid, dup), err
		}},
		{"DeliverWithin over quota", func(s Store) ([]any, error) {
			uid, dup, err := s.DeliverWithin(alice, "Q5/alice@example.com", d2, msg, 1<<20)
			return all(uid, dup), err
		}},
		{"DeliverWithin duplicate over quota", func(s Store) ([]any, error) {
			uid, dup, err := s.DeliverWithin(alice, "Q4/alice@example.com", d2, msg, 1)
			return all(uid, dup), err
		}},
		{"Messages", func(s Store) ([]any, error) { v, err := s.Messages(alice, "INBOX"); return all(v), err }},
		{"Messages empty", func(s Store) ([]any, error) { v, err := s.Messages(alice, "Drafts"); return all(v), err }},
		{"Messages missing", func(s Store) ([]any, error) { v, err := s.Messages(alice, "Nope"); return all(v), err }},
		{"Message", func(s Store) ([]any, error) { v, err := s.Message(alice, "INBOX", 1); return all(v), err }},
		{"Message missing", func(s Store) ([]any, error) { v, err := s.Message(alice, "INBOX", 999); return all(v), err }},
		{"Body", func(s Store) ([]any, error) { v, err := s.Body(alice, "INBOX", 1); return all(v), err }},
		{"Body empty", func(s Store) ([]any, error) { v, err := s.Body(alice, "INBOX", 3); return all(len(v)), err }},
		{"Body 5 MiB", func(s Store) ([]any, error) {
			v, err := s.Body(alice, "Projects", 1)
			return all(bytes.Equal(v, big)), err
		}},
		{"Body missing", func(s Store) ([]any, error) { v, err := s.Body(alice, "INBOX", 999); return all(v), err }},
		{"StoreFlags", func(s Store) ([]any, error) {
			up, failed, err := s.StoreFlags(alice, "INBOX", []uint32{1, 2, 999}, mailstore.FlagsAdd, []string{`\Flagged`}, 0)
			return all(up, failed), err
		}},
		{"StoreFlags unchangedSince", func(s Store) ([]any, error) {
			up, failed, err := s.StoreFlags(alice, "INBOX", []uint32{1, 2, 3}, mailstore.FlagsSet, []string{`\Answered`}, 1)
			return all(up, failed), err
		}},
		{"StoreFlags empty set", func(s Store) ([]any, error) {
			up, failed, err := s.StoreFlags(alice, "INBOX", []uint32{}, mailstore.FlagsRemove, nil, 0)
			return all(up, failed), err
		}},
		{"StoreFlags bad op", func(s Store) ([]any, error) {
			up, failed, err := s.StoreFlags(alice, "INBOX", []uint32{1}, 0, []string{`\Seen`}, 0)
			return all(up, failed), err
		}},
		{"StoreFlags bad flag", func(s Store) ([]any, error) {
			up, failed, err := s.StoreFlags(alice, "INBOX", []uint32{1}, mailstore.FlagsAdd, []string{"a b"}, 0)
			return all(up, failed), err
		}},
		{"Copy", func(s Store) ([]any, error) {
			uv, src, dst, err := s.Copy(alice, "INBOX", []uint32{2, 1, 77}, "Projects")
			return all(uvOK(s, "Projects", uv, err), src, dst), err
		}},
		{"Copy nothing", func(s Store) ([]any, error) {
			uv, src, dst, err := s.Copy(alice, "INBOX", []uint32{77}, "Projects")
			return all(uvOK(s, "Projects", uv, err), src, dst), err
		}},
		{"Copy to missing", func(s Store) ([]any, error) {
			uv, src, dst, err := s.Copy(alice, "INBOX", []uint32{1}, "Nope")
			return all(uv, src, dst), err
		}},
		{"Move", func(s Store) ([]any, error) {
			uv, src, dst, err := s.Move(alice, "INBOX", []uint32{3}, "Starred")
			return all(uvOK(s, "Starred", uv, err), src, dst), err
		}},
		{"Move from missing", func(s Store) ([]any, error) {
			uv, src, dst, err := s.Move(alice, "Nope", []uint32{1}, "INBOX")
			return all(uv, src, dst), err
		}},
		{"mark deleted", func(s Store) ([]any, error) {
			up, failed, err := s.StoreFlags(alice, "INBOX", []uint32{1, 2}, mailstore.FlagsAdd, []string{`\Deleted`}, 0)
			return all(up, failed), err
		}},
		{"Expunge none of empty set", func(s Store) ([]any, error) {
			v, err := s.Expunge(alice, "INBOX", []uint32{})
			return all(v), err
		}},
		{"Expunge some", func(s Store) ([]any, error) { v, err := s.Expunge(alice, "INBOX", []uint32{2}); return all(v), err }},
		{"Expunge all", func(s Store) ([]any, error) { v, err := s.Expunge(alice, "INBOX", nil); return all(v), err }},
		{"Expunge missing", func(s Store) ([]any, error) { v, err := s.Expunge(alice, "Nope", nil); return all(v), err }},
		{"Usage", func(s Store) ([]any, error) { n, b, err := s.Usage(alice); return all(n, b), err }},
		{"Usage unknown", func(s Store) ([]any, error) { n, b, err := s.Usage("nobody@example.com"); return all(n, b), err }},
		{"Usage bad", func(s Store) ([]any, error) { n, b, err := s.Usage("nobody"); return all(n, b), err }},
		{"DeleteMailbox", func(s Store) ([]any, error) { return nil, s.DeleteMailbox(alice, "Reisen/Zürich") }},
		{"DeleteMailbox missing", func(s Store) ([]any, error) { return nil, s.DeleteMailbox(alice, "Nope") }},
		{"Mailboxes after", func(s Store) ([]any, error) { v, err := s.Mailboxes(alice); return all(v), err }},
		{"DeleteAccount", func(s Store) ([]any, error) { return nil, s.DeleteAccount(bob) }},
		{"DeleteAccount unknown", func(s Store) ([]any, error) { return nil, s.DeleteAccount("nobody@example.com") }},
		{"Mailboxes deleted", func(s Store) ([]any, error) { v, err := s.Mailboxes(bob); return all(v), err }},
		{"Usage deleted", func(s Store) ([]any, error) { n, b, err := s.Usage(bob); return all(n, b), err }},
	}
	for _, op := range ops {
		wantV, wantErr := op.do(local)
		gotV, gotErr := op.do(client)
		if sentinel(gotErr) != sentinel(wantErr) {
			t.Errorf("%s: error %v, want one like %v", op.name, gotErr, wantErr)
			continue
		}
		if gotErr != nil && !strings.Contains(gotErr.Error(), client.addr) {
			t.Errorf("%s: error %q does not say which node", op.name, gotErr)
		}
		if w, g := normalize(wantV), normalize(gotV); !reflect.DeepEqual(g, w) {
			t.Errorf("%s:\n got %#v\nwant %#v", op.name, g, w)
		}
	}

	// A zero internal date means now on the owner.
	before := time.Now()
	if err := client.CreateMailbox(alice, "Now", ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := client.Append(alice, "Now", nil, time.Time{}, msg); err != nil {
		t.Fatal(err)
	}
	m, err := client.Message(alice, "Now", 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.InternalDate.Before(before.Truncate(time.Second)) || m.InternalDate.After(time.Now()) {
		t.Errorf("zero internal date stored as %v, want about now", m.InternalDate)
	}

	// Reads through the client equal reads of the served store exactly,
	// UIDVALIDITY and zones included.
	if got, want := snapshot(t, client, alice), snapshot(t, remote, alice); !reflect.DeepEqual(got, want) {
		t.Errorf("state through the client differs from the served store:\n got %#v\nwant %#v", got, want)
	}
	if m, _ := remote.Message(alice, "INBOX", 4); !m.InternalDate.Equal(d1) {
		t.Errorf("delivered date %v, want %v", m.InternalDate, d1)
	} else if _, off := m.InternalDate.Zone(); off != 5*3600+30*60+15 {
		t.Errorf("delivered date offset %d, want %d", off, 5*3600+30*60+15)
	}
}

// normalize clears what legitimately differs between two stores given
// the same operations: UIDVALIDITY, which comes from the clock.
func normalize(vs []any) []any {
	out := slices.Clone(vs)
	for i, v := range out {
		switch v := v.(type) {
		case mailstore.MailboxInfo:
			v.UIDValidity = 0
			out[i] = v
		case []mailstore.MailboxInfo:
			if v != nil {
				v = slices.Clone(v)
				for j := range v {
					v[j].UIDValidity = 0
				}
				out[i] = v
			}
		}
	}
	return out
}

type state struct {
	Boxes    []mailstore.MailboxInfo
	Messages map[string][]mailstore.Message
	Bodies   map[string][]byte
	Count    int
	Bytes    int64
}

func snapshot(t *testing.T, s Store, account string) state {
	t.Helper()
	st := state{Messages: map[string][]mailstore.Message{}, Bodies: map[string][]byte{}}
	var err error
	if st.Boxes, err = s.Mailboxes(account); err != nil {
		t.Fatal(err)
	}
	for _, b := range st.Boxes {
		ms, err := s.Messages(account, b.Name)
		if err != nil {
			t.Fatal(err)
		}
		st.Messages[b.Name] = ms
		for _, m := range ms {
			body, err := s.Body(account, b.Name, m.UID)
			if err != nil {
				t.Fatal(err)
			}
			st.Bodies[fmt.Sprint(b.Name, "/", m.UID)] = body
		}
	}
	if st.Count, st.Bytes, err = s.Usage(account); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestUnavailable(t *testing.T) {
	down := NewClient(peer.NewHTTPClient(), freeAddr(t)) // nothing listens

	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })
	slow := NewClient(hang.Client(), strings.TrimPrefix(hang.URL, "http://"))
	slow.Timeout = 50 * time.Millisecond

	dying := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream gone", http.StatusBadGateway)
	}))
	t.Cleanup(dying.Close)
	bad := NewClient(dying.Client(), strings.TrimPrefix(dying.URL, "http://"))

	closedStore, _, closed := served(t)
	closedStore.Close()

	for _, tc := range []struct {
		name   string
		c      *Client
		alsoIs error
	}{
		{"connection refused", down, nil},
		{"timeout", slow, context.DeadlineExceeded},
		{"bare 5xx", bad, nil},
		{"store closed", closed, mailstore.ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := map[string]error{}
			calls["Mailboxes"] = func() error { _, err := tc.c.Mailboxes(alice); return err }()
			calls["Append"] = func() error { _, _, err := tc.c.Append(alice, "INBOX", nil, time.Time{}, []byte("x")); return err }()
			calls["Body"] = func() error { _, err := tc.c.Body(alice, "INBOX", 1); return err }()
			calls["EnsureAccount"] = tc.c.EnsureAccount(alice)
			for name, err := range calls {
				if !errors.Is(err, ErrUnavailable) {
					t.Errorf("%s: %v, want ErrUnavailable", name, err)
				}
				if tc.alsoIs != nil && !errors.Is(err, tc.alsoIs) {
					t.Errorf("%s: %v, want it to wrap %v too", name, err, tc.alsoIs)
				}
			}
		})
	}
}

// Answers that are not the handler's own, such as the 404 of a node too
// old to serve a method, are errors but not ErrUnavailable: retrying
// elsewhere would not help.
func TestForeignAnswer(t *testing.T) {
	old := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(old.Close)
	c := NewClient(old.Client(), strings.TrimPrefix(old.URL, "http://"))
	_, err := c.Mailboxes(alice)
	if err == nil || errors.Is(err, ErrUnavailable) || sentinel(err) != "other" {
		t.Fatalf("got %v, want a plain error", err)
	}
}

func TestBodyLimit(t *testing.T) {
	_, h, c := served(t)
	h.maxBody = 1 << 10
	if err := c.EnsureAccount(alice); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.Append(alice, "INBOX", nil, time.Time{}, make([]byte, 2<<10))
	if !errors.Is(err, mailstore.ErrBadArgument) {
		t.Fatalf("oversized append: %v, want ErrBadArgument", err)
	}
	if _, _, err := c.Append(alice, "INBOX", nil, time.Time{}, make([]byte, 1<<10)); err != nil {
		t.Fatalf("append at the limit: %v", err)
	}
}
