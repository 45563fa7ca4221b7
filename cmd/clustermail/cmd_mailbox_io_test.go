package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"clustermail/api"
	"clustermail/backup"
)

func TestProgressLine(t *testing.T) {
	tests := []struct {
		name       string
		totalMsgs  int
		totalBytes int64
		msgs       int
		bytes      int64
		elapsed    time.Duration
		want       string
	}{
		{"messages known", 200, 0, 50, 3 << 20, 2 * time.Second, "INBOX [#####---------------]  25%  50/200 messages  3MiB  1.5MiB/s"},
		{"bytes known", 0, 4 << 20, 0, 1 << 20, time.Second, "INBOX [#####---------------]  25%  1MiB/4MiB  1MiB/s"},
		{"both known, bar follows bytes", 10, 4 << 20, 1, 2 << 20, time.Second, "INBOX [##########----------]  50%  1/10 messages  2MiB/4MiB  2MiB/s"},
		{"nothing known", 0, 0, 7, 1500, 0, "INBOX  7 messages  1.5KiB"},
		{"past the total", 3, 0, 4, 10, time.Second, "INBOX [####################] 100%  4/3 messages  10B  10B/s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &progress{label: "INBOX", totalMsgs: tc.totalMsgs, totalBytes: tc.totalBytes}
			if got := p.line(tc.elapsed, tc.msgs, tc.bytes); got != tc.want {
				t.Errorf("\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestProgressRedraw: the line is rewritten in place, not more often than
// redrawEvery, not at all for a short run in automatic mode, and ended
// with a newline.
func TestProgressRedraw(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	var out bytes.Buffer
	p := &progress{out: &out, label: "x", enabled: true, now: clock, start: now}
	p.update(1, 100)
	now = now.Add(redrawEvery / 2)
	p.update(2, 200) // too soon
	now = now.Add(redrawEvery)
	p.update(3, 300)
	p.done(4, 400)
	lines := strings.Split(out.String(), "\r")
	if len(lines) != 4 || !strings.HasSuffix(out.String(), "\n") || !strings.Contains(lines[2], "3 messages") || !strings.Contains(lines[3], "4 messages") {
		t.Errorf("output %q", out.String())
	}

	out.Reset()
	quiet := &progress{out: &out, label: "x", enabled: true, delay: autoDelay, now: clock, start: now}
	quiet.update(1, 100)
	quiet.done(1, 100)
	if out.Len() != 0 {
		t.Errorf("a run shorter than %v drew %q", autoDelay, out.String())
	}
}

func TestImportSources(t *testing.T) {
	root := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("single.mbox", "")
	write("export/INBOX.mbox", "")
	write("export/Work/Projects.mbox", "")
	write("export/%2Edotted.mbox", "")
	write("export/notes.txt", "")
	write("maildir/cur/1.host:2,S", "Subject: a\n\n")
	write("maildir/new/2.host", "Subject: b\n\n")
	write("maildir/.Work.Projects/cur/3.host:2,", "Subject: c\n\n")
	write("maildir/.NotAMaildir/readme", "")
	if err := os.MkdirAll(filepath.Join(root, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	type src struct{ folder, from string }
	tests := []struct {
		path, folder string
		want         []src
		skipped      int
		err          string
	}{
		{path: "single.mbox", want: []src{{"INBOX", "single.mbox"}}},
		{path: "single.mbox", folder: "Old", want: []src{{"Old", "single.mbox"}}},
		{path: "-", want: []src{{"INBOX", "stdin"}}},
		{path: "export", want: []src{{".dotted", "export/%2Edotted.mbox"}, {"INBOX", "export/INBOX.mbox"}, {"Work/Projects", "export/Work/Projects.mbox"}}, skipped: 1},
		{path: "export", folder: "Old", want: []src{{"Old/.dotted", "export/%2Edotted.mbox"}, {"Old/INBOX", "export/INBOX.mbox"}, {"Old/Work/Projects", "export/Work/Projects.mbox"}}, skipped: 1},
		{path: "maildir", want: []src{{"INBOX", "maildir"}, {"Work/Projects", "maildir/.Work.Projects"}}},
		{path: "maildir", folder: "Old", want: []src{{"Old", "maildir"}, {"Old/Work/Projects", "maildir/.Work.Projects"}}},
		{path: "empty", err: "holds no .mbox files and is not a Maildir"},
		{path: "missing", err: "no such file"},
	}
	for _, tc := range tests {
		path := tc.path
		if path != "-" {
			path = filepath.Join(root, path)
		}
		srcs, skipped, err := importSources(path, tc.folder)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.path, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.path, err)
			continue
		}
		var got []src
		for _, s := range srcs {
			from, _ := filepath.Rel(root, s.from)
			if s.from == "stdin" {
				from = s.from
			}
			got = append(got, src{s.folder, filepath.ToSlash(from)})
		}
		if !slices.Equal(got, tc.want) || len(skipped) != tc.skipped {
			t.Errorf("%s --folder %q: got %v (skipped %v), want %v (skipped %d)", tc.path, tc.folder, got, skipped, tc.want, tc.skipped)
		}
	}
	// The Maildir's messages come with their flags, oldest first.
	srcs, _, _ := importSources(filepath.Join(root, "maildir"), "")
	if len(srcs[0].maildir) != 2 || !slices.Equal(srcs[0].maildir[0].Flags, []string{`\Seen`}) && !slices.Equal(srcs[0].maildir[1].Flags, []string{`\Seen`}) {
		t.Errorf("Maildir INBOX: %+v", srcs[0].maildir)
	}
}

// snapshotBytes is a valid snapshot file.
func snapshotBytes(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	data := strings.Repeat("state ", 1000)
	if _, err := backup.WriteSnapshot(&b, backup.SnapshotHeader{Index: 42, Term: 3, RaftVersion: 1, Size: int64(len(data)), Node: "n1"}, strings.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestSnapshotCommands(t *testing.T) {
	isolateEnv(t)
	good := snapshotBytes(t)
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 1
	var serve []byte // what GET /v1/cluster/snapshot answers
	var uploaded []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method + " " + r.URL.Path {
		case "GET /v1/cluster/snapshot":
			w.Write(serve)
		case "POST /v1/cluster/snapshot/restore":
			uploaded, _ = io.ReadAll(r.Body)
			json.NewEncoder(w).Encode(api.SnapshotInfo{Index: 42, Term: 3, Size: 6000, Node: "n1", RestoredBy: "n2", LogIndex: 100})
		case "GET /v1/cluster/status":
			json.NewEncoder(w).Encode(api.Status{Node: "n2", Leader: "n2", CommitIndex: 99})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	file := filepath.Join(dir, "s.snapshot")

	serve = good
	out, err := runCmd(t, "", "cluster", "snapshot", "save", file, "--api", srv.URL)
	if err != nil || !strings.Contains(out, "saved the snapshot of raft index 42 (term 3") {
		t.Fatalf("save: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(file); !bytes.Equal(got, good) {
		t.Error("the saved file is not what the leader sent")
	}

	serve = bad
	if _, err := runCmd(t, "", "cluster", "snapshot", "save", filepath.Join(dir, "bad.snapshot"), "--api", srv.URL); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Errorf("save of a damaged stream: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("a failed save left files behind: %v", entries)
	}

	out, err = runCmd(t, "yes\n", "cluster", "snapshot", "restore", file, "--api", srv.URL)
	if err != nil || !strings.Contains(out, "restored the snapshot of raft index 42") || !strings.Contains(out, "from index 100") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if !bytes.Equal(uploaded, good) {
		t.Error("the upload is not the file")
	}

	uploaded = nil
	if err := os.WriteFile(file, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"cluster", "snapshot", "restore", "--yes", file}, {"cluster", "snapshot", "restore", "-"}} {
		if _, err := runCmd(t, "", append(args, "--api", srv.URL)...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	if uploaded != nil {
		t.Error("a damaged file was uploaded")
	}
	if err := os.WriteFile(file, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runCmd(t, "no\n", "cluster", "snapshot", "restore", file, "--api", srv.URL); err == nil || uploaded != nil {
		t.Errorf("restore answered \"no\": %v, uploaded %d bytes", err, len(uploaded))
	}
}

// TestStreamStall: a transfer that stops moving gives up after --timeout,
// however long the whole command has run.
func TestStreamStall(t *testing.T) {
	isolateEnv(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(api.HeaderExportMessages, "3")
		w.WriteHeader(200)
		io.WriteString(w, "From a Thu Jan  1 00:00:00 2026\nSubject: 1\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // stalls until the client gives up
	}))
	t.Cleanup(srv.Close)
	_, err := runCmd(t, "", "mailbox", "export", "a@example.org", "--timeout", "200ms", "--api", srv.URL)
	if err == nil || !strings.Contains(err.Error(), "no data moved for 200ms") {
		t.Errorf("error %v", err)
	}
}

// TestExportTrailers: an export whose owner reports a failure in the
// trailer, or whose stream ends without the trailer, fails and leaves no
// file.
func TestExportTrailers(t *testing.T) {
	isolateEnv(t)
	var trailer map[string]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", api.TrailerExportMessages+", "+api.TrailerExportError)
		io.WriteString(w, "From a Thu Jan  1 00:00:00 2026\nSubject: 1\n\n")
		for k, v := range trailer {
			w.Header().Set(k, v)
		}
	}))
	t.Cleanup(srv.Close)
	tests := []struct {
		trailer map[string]string
		err     string
	}{
		{map[string]string{api.TrailerExportMessages: "1"}, ""},
		{map[string]string{api.TrailerExportError: "disk on fire"}, "stopped: disk on fire"},
		{nil, "the stream ended early"},
	}
	for _, tc := range tests {
		trailer = tc.trailer
		file := filepath.Join(t.TempDir(), "out.mbox")
		_, err := runCmd(t, "", "mailbox", "export", "a@example.org", "-o", file, "--api", srv.URL)
		_, statErr := os.Stat(file)
		switch {
		case tc.err == "" && (err != nil || statErr != nil):
			t.Errorf("trailer %v: %v, file: %v", tc.trailer, err, statErr)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || statErr == nil):
			t.Errorf("trailer %v: error %v, want %q and no file (%v)", tc.trailer, err, tc.err, statErr)
		}
	}
}
