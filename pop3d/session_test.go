package pop3d

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"clustermail/mailstore"
)

func TestWriteStuffed(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ".\r\n"},
		{"a\r\nb\r\n", "a\r\nb\r\n.\r\n"},
		{".a\r\n..b\r\n.\r\n", "..a\r\n...b\r\n..\r\n.\r\n"},
		{"no newline", "no newline\r\n.\r\n"},
		{"x\r\n.", "x\r\n..\r\n.\r\n"},
	} {
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		writeStuffed(w, []byte(tc.in))
		w.Flush()
		if b.String() != tc.want {
			t.Errorf("writeStuffed(%q) = %q, want %q", tc.in, b.String(), tc.want)
		}
	}
}

func TestTop(t *testing.T) {
	const msg = "A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n"
	for _, tc := range []struct {
		msg  string
		n    int
		want string
	}{
		{msg, 0, "A: 1\r\nB: 2\r\n\r\n"},
		{msg, 2, "A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n"},
		{msg, 3, msg},
		{msg, 100, msg},
		{"A: 1\r\nB: 2\r\n", 5, "A: 1\r\nB: 2\r\n"},
		{"\r\nbody\r\n", 0, "\r\n"},
		{"A: 1\n\nl1\nl2\n", 1, "A: 1\n\nl1\n"},
		{"", 3, ""},
	} {
		if got := string(top([]byte(tc.msg), tc.n)); got != tc.want {
			t.Errorf("top(%q, %d) = %q, want %q", tc.msg, tc.n, got, tc.want)
		}
	}
}

// memStore is a fixed, in-memory Store for the session fuzzer: fast, and
// the same for every input.
type memStore struct{}

var memBodies = map[uint32]string{
	7: "Subject: a\r\n\r\n.dot\r\nx\r\n",
	9: "no header end",
}

func (memStore) Messages(account, mailbox string) ([]mailstore.Message, error) {
	return []mailstore.Message{{UID: 7, Size: int64(len(memBodies[7]))}, {UID: 9, Size: int64(len(memBodies[9]))}}, nil
}

func (memStore) Body(account, mailbox string, uid uint32) ([]byte, error) {
	b, ok := memBodies[uid]
	if !ok {
		return nil, mailstore.ErrNoMessage
	}
	return []byte(b), nil
}

func (memStore) Mailbox(account, name string) (mailstore.MailboxInfo, error) {
	return mailstore.MailboxInfo{Name: name, UIDValidity: 1}, nil
}

func (memStore) StoreFlags(account, mailbox string, uids []uint32, op mailstore.FlagOp, flags []string, unchangedSince uint64) ([]mailstore.Message, []uint32, error) {
	return nil, nil, nil
}

func (memStore) Expunge(account, mailbox string, uids []uint32) ([]uint32, error) {
	return uids, nil
}

// FuzzSession feeds arbitrary client input to a whole session and checks
// it neither panics nor hangs: the session must end once the input does.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"CAPA\r\nUSER alice\r\nPASS " + alicePass + "\r\nSTAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\nTOP 2 0\r\nDELE 1\r\nRSET\r\nDELE 2\r\nQUIT\r\n",
		"AUTH PLAIN\r\nAGFsaWNlAHNlY3JldCBwYXNz\r\nRETR 2\r\nTOP 1 1\r\nNOOP\r\n",
		"AUTH PLAIN\r\n*\r\nAUTH\r\nSTLS\r\nUSER\r\nPASS\r\n",
		"\x00\xff\r\n" + strings.Repeat("x", 3000) + "\n\n\r\r\n",
	} {
		f.Add([]byte(s))
	}
	srv, err := New(Config{InsecureAuth: true, Timeout: 5 * time.Second}, &fakeBackend{store: memStore{}}, nil, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	srv.wait = func(time.Duration) bool { return true }
	f.Fuzz(func(t *testing.T, input []byte) {
		server, client := net.Pipe()
		defer client.Close()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer server.Close()
			newSession(srv, server).run()
		}()
		_, _ = client.Write(input)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("session still running 10 s after its input ended: %q", input)
		}
	})
}
