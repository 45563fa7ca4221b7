package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"clustermail/api"
	"clustermail/backup"
)

// run runs the real binary's operator command against a node's API, with
// stdin, and returns stdout and stderr apart.
func run(t *testing.T, n *node, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(binary, append(args, "--api", "http://"+n.api)...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// mustRun is run that fails the test on an error.
func mustRun(t *testing.T, n *node, stdin string, args ...string) (stdout, stderr string) {
	t.Helper()
	o, e, err := run(t, n, stdin, args...)
	if err != nil {
		t.Fatalf("clustermail %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, o, e)
	}
	return o, e
}

// follower returns a node that is not the Raft leader.
func follower(t *testing.T, c *testCluster) *node {
	t.Helper()
	for _, nd := range c.nodes {
		st, err := nd.client().Status(ctx(t))
		if err == nil && st.State != "Leader" {
			return nd
		}
	}
	t.Fatal("no follower")
	return nil
}

// directoryOf is what a node's directory holds, as sorted strings.
func directoryOf(n *node) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := n.client()
	ds, err := c.Domains(ctx)
	if err != nil {
		return "", err
	}
	us, err := c.Users(ctx, "")
	if err != nil {
		return "", err
	}
	as, err := c.Aliases(ctx)
	if err != nil {
		return "", err
	}
	var out []string
	for _, d := range ds {
		out = append(out, "domain "+d.Name)
	}
	for _, u := range us {
		out = append(out, "user "+u.Address+" on "+u.Node)
	}
	for _, a := range as {
		out = append(out, "alias "+a.Alias+" -> "+strings.Join(a.Targets, ","))
	}
	sort.Strings(out)
	return strings.Join(out, "\n"), nil
}

// TestBackupSnapshot: a snapshot saved through a follower, then changes to
// the directory (more than the readiness slack of 16 entries), then a
// restore through a follower: every node has the saved directory again,
// is ready, and takes new writes. A damaged file is refused before
// anything changes, and so is a restore nobody confirmed.
func TestBackupSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := newCluster(t, 3)
	via := follower(t, c)
	cl := via.client()
	if _, err := cl.AddDomain(ctx(t), "snap.test"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		if _, err := cl.AddUser(ctx(t), api.UserAddRequest{Address: u + "@snap.test", Password: "a good password"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.AddAlias(ctx(t), "team@snap.test", []string{"alice@snap.test", "bob@snap.test"}); err != nil {
		t.Fatal(err)
	}
	saved, err := directoryOf(via)
	if err != nil {
		t.Fatal(err)
	}

	file := filepath.Join(t.TempDir(), "state.snapshot")
	out, _ := mustRun(t, via, "", "cluster", "snapshot", "save", file)
	if !strings.Contains(out, "saved the snapshot of raft index") || !strings.Contains(out, "not in it") {
		t.Errorf("save said:\n%s", out)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	h, err := backup.VerifySnapshot(f)
	f.Close()
	if err != nil {
		t.Fatalf("the saved file does not verify: %v", err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("the snapshot (with password hashes) has mode %v, want 0600", fi.Mode().Perm())
	}

	// Change the directory: remove, add, and enough entries that a node
	// whose applied index stayed at the snapshot's would not be ready.
	if err := cl.RemoveAlias(ctx(t), "team@snap.test"); err != nil {
		t.Fatal(err)
	}
	if err := cl.RemoveUser(ctx(t), "bob@snap.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.AddDomain(ctx(t), "later.test"); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := cl.AddUser(ctx(t), api.UserAddRequest{Address: fmt.Sprintf("u%02d@later.test", i), Password: "a good password"}); err != nil {
			t.Fatal(err)
		}
	}
	changed, err := directoryOf(via)
	if err != nil || changed == saved {
		t.Fatalf("the directory did not change (%v)", err)
	}

	t.Run("not confirmed", func(t *testing.T) {
		o, e, err := run(t, via, "no\n", "cluster", "snapshot", "restore", file)
		if err == nil || !strings.Contains(e, "not confirmed") || !strings.Contains(e, "Type \"yes\" to restore") {
			t.Fatalf("restore answered \"no\": %v\nstdout:\n%s\nstderr:\n%s", err, o, e)
		}
		if !strings.Contains(e, fmt.Sprintf("raft index %d", h.Index)) || !strings.Contains(e, "Message bodies and mailboxes are not in the snapshot") {
			t.Errorf("the question does not say what is restored:\n%s", e)
		}
		if d, _ := directoryOf(via); d != changed {
			t.Errorf("the directory changed without confirmation:\n%s", d)
		}
	})
	t.Run("damaged file", func(t *testing.T) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x20
		bad := filepath.Join(t.TempDir(), "bad.snapshot")
		if err := os.WriteFile(bad, b, 0o600); err != nil {
			t.Fatal(err)
		}
		// From a file, the command finds the damage; from stdin, the
		// leader does, before it restores anything.
		for _, args := range [][]string{{"cluster", "snapshot", "restore", "--yes", bad}, {"cluster", "snapshot", "restore", "--yes", "-"}} {
			o, e, err := run(t, via, string(b), args...)
			if err == nil || !strings.Contains(e, "checksum mismatch") {
				t.Errorf("%v: %v\nstdout:\n%s\nstderr:\n%s", args, err, o, e)
			}
		}
		if d, _ := directoryOf(via); d != changed {
			t.Errorf("a damaged snapshot changed the directory:\n%s", d)
		}
	})

	out, _ = mustRun(t, via, "yes\n", "cluster", "snapshot", "restore", file)
	if !strings.Contains(out, fmt.Sprintf("restored the snapshot of raft index %d", h.Index)) {
		t.Errorf("restore said:\n%s", out)
	}
	for _, nd := range c.nodes {
		waitFor(t, 30*time.Second, nd.name+" to hold the saved directory", func() error {
			d, err := directoryOf(nd)
			if err != nil {
				return err
			}
			if d != saved {
				return fmt.Errorf("directory:\n%s\nwant:\n%s", d, saved)
			}
			return nil
		})
		nd.waitReady(10 * time.Second)
	}
	// The cluster goes on: a write through any node, seen everywhere.
	if _, err := c.nodes[0].client().AddUser(ctx(t), api.UserAddRequest{Address: "carol@snap.test", Password: "a good password"}); err != nil {
		t.Fatal(err)
	}
	for _, nd := range c.nodes {
		waitFor(t, 10*time.Second, nd.name+" to see the new account", func() error {
			_, err := nd.client().User(ctx(t), "carol@snap.test")
			return err
		})
	}

	// After a restart of every node (whose state is then current without
	// replaying anything), a snapshot can still be saved, and holds the
	// state.
	for _, nd := range c.nodes {
		nd.signal(syscall.SIGINT)
		nd.start()
	}
	for _, nd := range c.nodes {
		nd.waitReady(60 * time.Second)
	}
	file2 := filepath.Join(t.TempDir(), "after-restart.snapshot")
	mustRun(t, follower(t, c), "", "cluster", "snapshot", "save", file2)
	f, err = os.Open(file2)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h2, err := backup.VerifySnapshot(f)
	if err != nil || h2.Index <= h.Index {
		t.Errorf("snapshot after the restart: index %d (first one %d), %v", h2.Index, h.Index, err)
	}
}

// folderMessages reads every mbox file of an "export --all" directory.
func folderMessages(t *testing.T, dir string) map[string][]backup.Message {
	t.Helper()
	out := map[string][]backup.Message{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		folder, err := backup.FileFolder(rel)
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		out[folder] = []backup.Message{}
		r := backup.NewMboxReader(f, 0)
		for {
			m, err := r.Next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			out[folder] = append(out[folder], m)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeMbox(t *testing.T, path string, msgs ...backup.Message) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	w := backup.NewMboxWriter(&b)
	for _, m := range msgs {
		if err := w.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sameMessage compares what an export keeps: content, flags (as a set),
// date (to the second).
func sameMessage(a, b backup.Message) bool {
	fa, fb := slices.Clone(a.Flags), slices.Clone(b.Flags)
	slices.Sort(fa)
	slices.Sort(fb)
	return bytes.Equal(a.Data, b.Data) && slices.Equal(fa, fb) && a.Date.Unix() == b.Date.Unix()
}

// TestBackupMailboxExportImport: folders with flags, dates and tricky
// bodies go into one account from a directory of mbox files, out of it
// with "export --all", and into another account; both accounts then hold
// the same folders, messages, flags and dates (not UIDs), byte for byte.
// Every command goes through a node that owns neither mailbox. A Maildir
// imports with its flags and subfolders.
func TestBackupMailboxExportImport(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := newCluster(t, 3)
	via := c.nodes[2]
	cl := via.client()
	if _, err := cl.AddDomain(ctx(t), "box.test"); err != nil {
		t.Fatal(err)
	}
	for u, nd := range map[string]string{"alice": "n1", "bob": "n2", "carol": "n1"} {
		if _, err := cl.AddUser(ctx(t), api.UserAddRequest{Address: u + "@box.test", Password: "a good password", Node: nd}); err != nil {
			t.Fatal(err)
		}
	}
	// Two messages that arrived by SMTP, with their Received headers.
	for _, s := range []string{"smtp one", "smtp two"} {
		if code, msg, err := send(via.smtp, "sender@client.test", []string{"alice@box.test"}, message(s)); err != nil || code != 250 {
			t.Fatalf("send: %d %s %v", code, msg, err)
		}
	}
	waitFor(t, 30*time.Second, "the SMTP messages in alice's INBOX", func() error {
		got, err := subjects(t, cl, "alice@box.test")
		if err != nil || got["smtp one"] != 1 || got["smtp two"] != 1 {
			return fmt.Errorf("%v %v", got, err)
		}
		return nil
	})

	day := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	src := map[string][]backup.Message{
		"INBOX": {
			{Date: day, Flags: []string{`\Seen`, `\Flagged`, "$Label1"}, Data: []byte("Subject: from lines\r\n\r\nFrom the start\r\n>From quoted\r\n>>From twice\r\n")},
		},
		"Archive": {
			{Date: day.Add(time.Hour), Flags: []string{`\Answered`}, Data: []byte("Subject: no final newline\r\n\r\nlast line")},
			{Date: day.Add(2 * time.Hour), Flags: []string{`\Deleted`, `\Draft`}, Data: []byte("Subject: empty lines\r\n\r\n\r\n\r\n")},
		},
		"Lists/go": {
			{Date: day.Add(3 * time.Hour), Flags: []string{"NonJunk"}, Data: []byte("Subject: bare LF\n\nunix\n")},
			{Date: day.Add(4 * time.Hour), Data: []byte("Subject: plain\r\n\r\nhello\r\n")},
		},
	}
	srcDir := filepath.Join(t.TempDir(), "src")
	for folder, msgs := range src {
		writeMbox(t, filepath.Join(srcDir, backup.FolderFile(folder)), msgs...)
	}
	if err := os.WriteFile(filepath.Join(srcDir, "README"), []byte("not mail"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut := mustRun(t, via, "", "mailbox", "import", "alice@box.test", srcDir)
	if !strings.Contains(out, "created folders: Lists, Lists/go") || !strings.Contains(errOut, "skipped") {
		t.Errorf("import said:\n%s\n%s", out, errOut)
	}

	// alice: every folder out; check it against what went in.
	aliceDir := filepath.Join(t.TempDir(), "alice")
	out, _ = mustRun(t, via, "", "mailbox", "export", "alice@box.test", "--all", "-o", aliceDir, "--progress")
	if !strings.Contains(out, "Lists/go") {
		t.Errorf("export said:\n%s", out)
	}
	alice := folderMessages(t, aliceDir)
	for _, f := range []string{"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", "Lists", "Lists/go"} {
		if _, ok := alice[f]; !ok {
			t.Errorf("no file for folder %s in the export (%v)", f, alice)
		}
	}
	for folder, want := range src {
		got := alice[folder]
		if folder == "INBOX" {
			if len(got) != 3 || !bytes.Contains(got[0].Data, []byte("Subject: smtp one")) || !bytes.Contains(got[0].Data, []byte("Received: ")) {
				t.Errorf("INBOX: want the two SMTP messages then the imported one, got %d messages", len(got))
				continue
			}
			got = got[2:]
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d messages, want %d", folder, len(got), len(want))
			continue
		}
		for i := range want {
			if !sameMessage(got[i], want[i]) {
				t.Errorf("%s message %d:\n got %q %q %v\nwant %q %q %v", folder, i, got[i].Data, got[i].Flags, got[i].Date, want[i].Data, want[i].Flags, want[i].Date)
			}
		}
	}

	// Into bob, and out again: the same files, byte for byte.
	mustRun(t, via, "", "mailbox", "import", "bob@box.test", aliceDir)
	bobDir := filepath.Join(t.TempDir(), "bob")
	mustRun(t, via, "", "mailbox", "export", "bob@box.test", "--all", "-o", bobDir)
	for folder := range alice {
		a, errA := os.ReadFile(filepath.Join(aliceDir, backup.FolderFile(folder)))
		b, errB := os.ReadFile(filepath.Join(bobDir, backup.FolderFile(folder)))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("folder %s differs between alice and bob (%v, %v):\n%s\n----\n%s", folder, errA, errB, a, b)
		}
	}
	// And as stored: bob's INBOX, through the API, is alice's but for UIDs.
	am, err := cl.Messages(ctx(t), "alice@box.test")
	if err != nil {
		t.Fatal(err)
	}
	bm, err := cl.Messages(ctx(t), "bob@box.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(am) != len(bm) {
		t.Fatalf("INBOX: alice has %d messages, bob %d", len(am), len(bm))
	}
	for i := range am {
		ab, err1 := cl.RawMessage(ctx(t), "alice@box.test", am[i].UID)
		bb, err2 := cl.RawMessage(ctx(t), "bob@box.test", bm[i].UID)
		if err1 != nil || err2 != nil || !bytes.Equal(ab, bb) || am[i].Date.Unix() != bm[i].Date.Unix() ||
			!sameMessage(backup.Message{Flags: am[i].Flags}, backup.Message{Flags: bm[i].Flags}) {
			t.Errorf("INBOX message %d: alice %+v, bob %+v (%v %v)", i, am[i], bm[i], err1, err2)
		}
	}

	t.Run("one folder to stdout", func(t *testing.T) {
		out, errOut := mustRun(t, via, "", "mailbox", "export", "bob@box.test", "--folder", "Lists/go")
		r := backup.NewMboxReader(strings.NewReader(out), 0)
		var got []backup.Message
		for {
			m, err := r.Next()
			if err != nil {
				break
			}
			got = append(got, m)
		}
		if len(got) != 2 || !sameMessage(got[0], src["Lists/go"][0]) || !strings.Contains(errOut, "exported 2 messages") {
			t.Errorf("got %d messages; stderr:\n%s", len(got), errOut)
		}
	})

	t.Run("Maildir", func(t *testing.T) {
		md := filepath.Join(t.TempDir(), "Maildir")
		files := map[string]string{
			"cur/1600000000.M1P1.host:2,FS":   "Subject: seen and flagged\n\nbody\n",
			"new/1600000001.M2P1.host":        "Subject: new\n\nbody\n",
			".Work.Projects/cur/1.M3.host:2,": "Subject: in a subfolder\n\nbody\n",
			".Work.Projects/new/.keep-me-out": "",
		}
		for name, content := range files {
			p := filepath.Join(md, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		mtime := time.Date(2020, 9, 13, 12, 26, 40, 0, time.UTC)
		if err := os.Chtimes(filepath.Join(md, "cur/1600000000.M1P1.host:2,FS"), mtime, mtime); err != nil {
			t.Fatal(err)
		}
		out, _ := mustRun(t, via, "", "mailbox", "import", "carol@box.test", md)
		if !strings.Contains(out, "Work/Projects") {
			t.Errorf("import said:\n%s", out)
		}
		dir := filepath.Join(t.TempDir(), "carol")
		mustRun(t, via, "", "mailbox", "export", "carol@box.test", "--all", "-o", dir)
		got := folderMessages(t, dir)
		inbox, sub := got["INBOX"], got["Work/Projects"]
		if len(inbox) != 2 || len(sub) != 1 {
			t.Fatalf("INBOX %d, Work/Projects %d messages", len(inbox), len(sub))
		}
		want := backup.Message{Date: mtime, Flags: []string{`\Flagged`, `\Seen`}, Data: []byte("Subject: seen and flagged\r\n\r\nbody\r\n")}
		if !sameMessage(inbox[0], want) {
			t.Errorf("INBOX[0] %q %q %v, want %q %q %v", inbox[0].Data, inbox[0].Flags, inbox[0].Date, want.Data, want.Flags, want.Date)
		}
		if len(inbox[1].Flags) != 0 || string(sub[0].Data) != "Subject: in a subfolder\r\n\r\nbody\r\n" {
			t.Errorf("new/ message flags %q; subfolder message %q", inbox[1].Flags, sub[0].Data)
		}
	})

	t.Run("errors", func(t *testing.T) {
		notMbox := filepath.Join(t.TempDir(), "letter.txt")
		if err := os.WriteFile(notMbox, []byte("Dear Bob,\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			args []string
			want string
		}{
			{[]string{"mailbox", "export", "bob@box.test", "--folder", "Nope"}, `has no folder "Nope"`},
			{[]string{"mailbox", "export", "nobody@box.test"}, "does not exist"},
			{[]string{"mailbox", "export", "bob@box.test", "--all"}, "name a directory with -o"},
			{[]string{"mailbox", "export", "bob@box.test", "--all", "-o", bobDir}, "exists; export into a new or empty directory"},
			{[]string{"mailbox", "import", "bob@box.test", notMbox}, "stopped after 0 messages"},
			{[]string{"mailbox", "import", "nobody@box.test", notMbox}, "does not exist"},
		}
		for _, tc := range tests {
			o, e, err := run(t, via, "", tc.args...)
			if err == nil || !strings.Contains(e, tc.want) {
				t.Errorf("%v: %v, want an error saying %q\nstdout:\n%s\nstderr:\n%s", tc.args, err, tc.want, o, e)
			}
		}
	})
}
