package mailstore

import (
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

const alice = "alice@example.com"

// openMem opens a store on a fresh in-memory filesystem, closed at cleanup.
func openMem(t testing.TB) (*Store, vfs.FS) {
	t.Helper()
	fs := vfs.NewMem()
	return openFS(t, fs), fs
}

func openFS(t testing.TB, fs vfs.FS) *Store {
	t.Helper()
	s, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// reopen closes s and opens the same filesystem again.
func reopen(t testing.TB, s *Store, fs vfs.FS) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return openFS(t, fs)
}

func must[T any](t testing.TB) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// appendMsg appends body to mailbox and returns its UID.
func appendMsg(t testing.TB, s *Store, account, mailbox string, flags []string, body string) uint32 {
	t.Helper()
	_, uid, err := s.Append(account, mailbox, flags, time.Unix(1700000000, 0), []byte(body))
	check(t, err)
	return uid
}

func uidsOf(msgs []Message) []uint32 {
	var out []uint32
	for _, m := range msgs {
		out = append(out, m.UID)
	}
	return out
}

// checkInvariants recomputes, from the raw keys, everything the store keeps
// incrementally (mailbox counters, account usage, body reference counts,
// name index) and fails the test on any mismatch. Tests call it after
// operations to keep usage honest.
func checkInvariants(t testing.TB, s *Store, account string) {
	t.Helper()
	a, err := normalizeAccount(account)
	check(t, err)
	var acct accountRecord
	if err := get(s.db, accountKey(a), acct.decode); err != nil && !errors.Is(err, pebble.ErrNotFound) {
		t.Fatal(err)
	}
	refs := map[uint64]int64{}
	var total, totalBytes int64
	names := map[string]uint64{}
	check(t, scanMailboxes(s.db, a, func(id uint64, box *mailboxRecord) error {
		names[box.Name] = id
		var n, bytes, unseen int64
		err := eachMessage(s.db, a, id, nil, func(uid uint32, m *messageRecord) error {
			n++
			bytes += m.Size
			if !hasFlag(m.Flags, flagSeen) {
				unseen++
			}
			refs[m.BodyID]++
			if uid >= box.UIDNext {
				t.Errorf("%s: uid %d >= uidnext %d", box.Name, uid, box.UIDNext)
			}
			if m.ModSeq > box.HighestModSeq || m.ModSeq == 0 {
				t.Errorf("%s: uid %d modseq %d, highest %d", box.Name, uid, m.ModSeq, box.HighestModSeq)
			}
			return nil
		})
		if n != box.Messages || bytes != box.Bytes || unseen != box.Unseen {
			t.Errorf("%s: counters %d/%d/%d, actual %d/%d/%d (messages/bytes/unseen)",
				box.Name, box.Messages, box.Bytes, box.Unseen, n, bytes, unseen)
		}
		total += n
		totalBytes += bytes
		return err
	}))
	if total != acct.Messages || totalBytes != acct.Bytes {
		t.Errorf("account usage %d/%d, actual %d/%d", acct.Messages, acct.Bytes, total, totalBytes)
	}
	msgs, bytes, err := s.Usage(account)
	check(t, err)
	if int64(msgs) != total || bytes != totalBytes {
		t.Errorf("Usage() = %d/%d, actual %d/%d", msgs, bytes, total, totalBytes)
	}
	indexed := 0
	scanRaw(t, s, accountPrefix(tableName, a), func(k, v []byte) {
		indexed++
		name := string(k[len(accountPrefix(tableName, a))+1:]) // names here are < 128 bytes
		if names[name] != decodeUint64(v) {
			t.Errorf("name index %q -> %d, records say %d", name, decodeUint64(v), names[name])
		}
	})
	if indexed != len(names) {
		t.Errorf("name index has %d entries, %d mailboxes", indexed, len(names))
	}
	stored := map[uint64]int64{}
	scanRaw(t, s, accountPrefix(tableBodyRef, a), func(k, v []byte) {
		stored[idOfKey(k)] = int64(decodeUint64(v))
	})
	for id, n := range refs {
		if stored[id] != n {
			t.Errorf("body %d: refcount %d, referenced %d times", id, stored[id], n)
		}
	}
	scanRaw(t, s, accountPrefix(tableBody, a), func(k, v []byte) {
		id := decodeUint64(k[len(k)-12 : len(k)-4])
		if refs[id] == 0 {
			t.Errorf("orphan body %d", id)
		}
	})
	for id := range stored {
		if refs[id] == 0 {
			t.Errorf("orphan refcount for body %d", id)
		}
	}
}

func scanRaw(t testing.TB, s *Store, prefix []byte, fn func(k, v []byte)) {
	t.Helper()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	check(t, err)
	for it.First(); it.Valid(); it.Next() {
		fn(it.Key(), it.Value())
	}
	check(t, it.Close())
}

func TestOpenRejectsNewerSchema(t *testing.T) {
	s, fs := openMem(t)
	check(t, s.db.Set(metaKey(metaVersion), appendUint64(nil, schemaVersion+1), pebble.Sync))
	check(t, s.Close())
	if _, err := Open("db", Options{FS: fs}); err == nil {
		t.Fatal("Open accepted a newer schema")
	}
}

func TestClosed(t *testing.T) {
	s, _ := openMem(t)
	check(t, s.Close())
	check(t, s.Close()) // idempotent
	if err := s.EnsureAccount(alice); !errors.Is(err, ErrClosed) {
		t.Errorf("EnsureAccount after Close: %v", err)
	}
	if _, err := s.Mailboxes(alice); !errors.Is(err, ErrClosed) {
		t.Errorf("Mailboxes after Close: %v", err)
	}
}

func TestOpenOnDisk(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	check(t, err)
	uid, _, err := s.Deliver(alice, "q1/alice", time.Now(), []byte("hi"))
	check(t, err)
	check(t, s.Close())
	s, err = Open(dir, Options{})
	check(t, err)
	defer s.Close()
	if got := must[[]byte](t)(s.Body(alice, "INBOX", uid)); string(got) != "hi" {
		t.Fatalf("body %q after reopen", got)
	}
}
