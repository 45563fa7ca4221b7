package backup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

var date = time.Date(2026, 11, 29, 4, 46, 23, 0, time.UTC)

// roundTrip writes msgs to an mbox and reads them back.
func roundTrip(t *testing.T, msgs []Message) ([]Message, string) {
	t.Helper()
	var file bytes.Buffer
	w := NewMboxWriter(&file)
	for _, m := range msgs {
		if err := w.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return readAll(t, file.String()), file.String()
}

func readAll(t *testing.T, file string) []Message {
	t.Helper()
	r := NewMboxReader(strings.NewReader(file), 1<<20)
	var out []Message
	for {
		m, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read back: %v\nfile:\n%q", err, file)
		}
		out = append(out, m)
	}
}

func TestMboxRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		data  string
		flags []string
		// inFile, if set, must appear in the file: the conventions the
		// file follows, not only that it reads back.
		inFile []string
	}{
		{name: "plain CRLF", data: "Subject: hi\r\n\r\nhello\r\n", inFile: []string{"\nSubject: hi\n\nhello\n\n"}},
		{name: "empty message", data: ""},
		{name: "only a line break", data: "\r\n"},
		{name: "no trailing newline", data: "Subject: x\r\n\r\nlast line", inFile: []string{markerHeader + ": no-eol\n"}},
		{name: "ends in a CR", data: "Subject: x\r\n\r\nodd\r"},
		{name: "From lines", data: "Subject: x\r\n\r\nFrom here\r\n>From there\r\n>>From afar\r\nFrom\r\nFromage\r\n",
			inFile: []string{"\n>From here\n>>From there\n>>>From afar\nFrom\nFromage\n"}},
		{name: "From at the very start", data: "From nobody\r\n"},
		{name: "empty lines at the end", data: "Subject: x\r\n\r\nbody\r\n\r\n\r\n"},
		{name: "bare LF kept", data: "Subject: x\n\nunix\nlines\r\nmixed\n", inFile: []string{markerHeader + ": raw\n"}},
		{name: "CR CR LF kept", data: "Subject: x\r\n\r\nodd\r\r\n"},
		{name: "raw without final newline", data: "a\nb", inFile: []string{markerHeader + ": raw no-eol\n"}},
		{name: "own Status headers kept", data: "Status: RO\r\nX-Status: F\r\nX-Keywords: junk\r\nSubject: x\r\n\r\nb\r\n", flags: []string{`\Answered`}},
		{name: "own marker header kept", data: "X-Clustermail-Mbox: raw\r\n\r\nb\r\n"},
		{name: "flags", data: "Subject: f\r\n\r\nb\r\n", flags: []string{`\Seen`, `\Answered`, `\Flagged`, `\Draft`, `\Deleted`, `$Junk`, `NonJunk`},
			inFile: []string{"Status: RO\nX-Status: AFTD\nX-Keywords: $Junk NonJunk\n"}},
		{name: "no flags", data: "Subject: f\r\n\r\nb\r\n", inFile: []string{"Status: O\nX-Status:\nX-Keywords:\n"}},
		{name: "8-bit and NUL", data: "Subject: \xe9t\xe9\r\n\r\n\x00\xff\r\n"},
	}
	var msgs []Message
	for i, tc := range tests {
		msgs = append(msgs, Message{Sender: "s@example.org", Date: date.Add(time.Duration(i) * time.Hour), Flags: tc.flags, Data: []byte(tc.data)})
	}
	got, file := roundTrip(t, msgs)
	if len(got) != len(msgs) {
		t.Fatalf("read %d messages, wrote %d\nfile:\n%s", len(got), len(msgs), file)
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := got[i]
			if string(g.Data) != tc.data {
				t.Errorf("data\n got %q\nwant %q", g.Data, tc.data)
			}
			if !sameFlags(g.Flags, tc.flags) {
				t.Errorf("flags %q, want %q", g.Flags, tc.flags)
			}
			if !g.Date.Equal(msgs[i].Date) || g.Sender != "s@example.org" {
				t.Errorf("From line: %q %v, want s@example.org %v", g.Sender, g.Date, msgs[i].Date)
			}
			// Each message alone, too, so inFile is checked against its
			// own file.
			_, one := roundTrip(t, msgs[i:i+1])
			for _, s := range tc.inFile {
				if !strings.Contains(one, s) {
					t.Errorf("file lacks %q:\n%s", s, one)
				}
			}
		})
	}
}

func sameFlags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, f := range a {
		if !slices.Contains(b, f) {
			return false
		}
	}
	return true
}

func TestMboxFileLayout(t *testing.T) {
	_, file := roundTrip(t, []Message{
		{Sender: "<a@example.org>", Date: date, Flags: []string{`\Seen`}, Data: []byte("Subject: 1\r\n\r\none\r\n")},
		{Sender: "", Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", 3600)), Data: []byte("Subject: 2\r\n\r\ntwo\r\n")},
	})
	want := "From a@example.org Sun Nov 29 04:46:23 2026\n" +
		"Status: RO\nX-Status:\nX-Keywords:\nSubject: 1\n\none\n\n" +
		"From MAILER-DAEMON Fri Jan  2 02:04:05 2026\n" +
		"Status: O\nX-Status:\nX-Keywords:\nSubject: 2\n\ntwo\n\n"
	if file != want {
		t.Errorf("file\n got %q\nwant %q", file, want)
	}
}

// TestMboxForeign reads files other tools write.
func TestMboxForeign(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		want  []Message
		error string
	}{
		{name: "empty file", file: ""},
		{name: "mutt, Status after other headers", file: "From bob@example.org Tue Jan  6 10:00:00 2026\n" +
			"Subject: a\nStatus: RO\nX-Status: A\n\nbody\n\n",
			want: []Message{{Sender: "bob@example.org", Date: time.Date(2026, 1, 6, 10, 0, 0, 0, time.UTC), Flags: []string{`\Seen`, `\Answered`},
				Data: []byte("Subject: a\r\n\r\nbody\r\n")}}},
		{name: "folded keywords, CRLF file", file: "From x Tue Jan  6 10:00:00 2026\r\nX-Keywords: one\r\n two\r\nSubject: b\r\n\r\nbody\r\n\r\n",
			want: []Message{{Sender: "x", Date: time.Date(2026, 1, 6, 10, 0, 0, 0, time.UTC), Flags: []string{"one", "two"},
				Data: []byte("Subject: b\r\n\r\nbody\r\n")}}},
		{name: "zone in the From line, no blank line at the end", file: "\n\nFrom x Tue Jan  6 10:00:00 2026 +0100\nSubject: c\n\nc",
			want: []Message{{Sender: "x", Date: time.Date(2026, 1, 6, 9, 0, 0, 0, time.UTC), Data: []byte("Subject: c\r\n\r\nc")}}},
		{name: "no date: the Date header", file: "From x\nDate: Tue, 6 Jan 2026 10:00:00 +0000\n\nd\n\n",
			want: []Message{{Sender: "x", Date: time.Date(2026, 1, 6, 10, 0, 0, 0, time.UTC), Data: []byte("Date: Tue, 6 Jan 2026 10:00:00 +0000\r\n\r\nd\r\n")}}},
		{name: "bad keywords dropped", file: "From x Tue Jan  6 10:00:00 2026\nX-Keywords: ok (bad) \\Recent\n\ne\n\n",
			want: []Message{{Sender: "x", Date: time.Date(2026, 1, 6, 10, 0, 0, 0, time.UTC), Flags: []string{"ok"}, Data: []byte("\r\ne\r\n")}}},
		{name: "not an mbox", file: "Subject: hi\n\nbody\n", error: "line 1: not an mbox file"},
		{name: "too large", file: "From x Tue Jan  6 10:00:00 2026\n" + strings.Repeat("x", 2000) + "\n", error: "message 1 (line 1): larger than 1024 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewMboxReader(strings.NewReader(tc.file), 1024)
			var got []Message
			var err error
			for {
				var m Message
				if m, err = r.Next(); err != nil {
					break
				}
				got = append(got, m)
			}
			if tc.error != "" {
				if err == nil || !strings.Contains(err.Error(), tc.error) {
					t.Fatalf("error %v, want %q", err, tc.error)
				}
				return
			}
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d messages, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Sender != w.Sender || !g.Date.Equal(w.Date) || !sameFlags(g.Flags, w.Flags) || string(g.Data) != string(w.Data) {
					t.Errorf("message %d\n got %q %v %q %q\nwant %q %v %q %q", i, g.Sender, g.Date, g.Flags, g.Data, w.Sender, w.Date, w.Flags, w.Data)
				}
			}
		})
	}
}

func TestCounter(t *testing.T) {
	var msgs []Message
	for i := range 50 {
		msgs = append(msgs, Message{Date: date, Data: []byte(fmt.Sprintf("Subject: %d\r\n\r\nFrom me\r\n>From you\r\n%s\r\n", i, strings.Repeat("From ", i)))})
	}
	_, file := roundTrip(t, msgs)
	// Written in pieces of every size, so that lines are split.
	for _, step := range []int{1, 2, 3, 5, 7, 4096} {
		var c Counter
		for b := []byte(file); len(b) > 0; {
			n := min(step, len(b))
			c.Write(b[:n])
			b = b[n:]
		}
		if c.Messages != len(msgs) || c.Bytes != int64(len(file)) {
			t.Errorf("step %d: counted %d messages, %d bytes; want %d, %d", step, c.Messages, c.Bytes, len(msgs), len(file))
		}
	}
}

// FuzzMboxRoundTrip: whatever the bytes and flags, a message reads back as
// it was written, next to another message.
func FuzzMboxRoundTrip(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nFrom me\r\n"), "$Junk", true)
	f.Add([]byte("a\nb\r\r\n>From \rx"), "", false)
	f.Add([]byte("X-Clustermail-Mbox: raw\n"), `\Seen`, true)
	f.Fuzz(func(t *testing.T, data []byte, keyword string, seen bool) {
		flags := []string{}
		if seen {
			flags = append(flags, `\Seen`)
		}
		if ValidFlag(keyword) && !strings.EqualFold(keyword, `\Recent`) && !isLetterFlag(keyword) {
			flags = append(flags, keyword)
		}
		msgs := []Message{{Date: date, Flags: flags, Data: data}, {Date: date, Data: []byte("Subject: next\r\n\r\n")}}
		got, file := roundTrip(t, msgs)
		if len(got) != 2 || !bytes.Equal(got[0].Data, data) || !sameFlags(got[0].Flags, flags) || string(got[1].Data) != "Subject: next\r\n\r\n" {
			t.Fatalf("round trip of %q %q failed:\nfile %q\ngot %+v", data, flags, file, got)
		}
	})
}

func TestFolderFile(t *testing.T) {
	tests := []struct{ folder, file string }{
		{"INBOX", "INBOX.mbox"},
		{"Work/Projects", "Work/Projects.mbox"},
		{"..", "%2E..mbox"},
		{"../../etc", "%2E./%2E./etc.mbox"},
		{".hidden/x.y", "%2Ehidden/x.y.mbox"},
		{`a:b\c?d"e<f>g|h%`, "a%3Ab%5Cc%3Fd%22e%3Cf%3Eg%7Ch%25.mbox"},
		{"Données/日本", "Données/日本.mbox"},
	}
	for _, tc := range tests {
		if got := FolderFile(tc.folder); got != tc.file {
			t.Errorf("FolderFile(%q) = %q, want %q", tc.folder, got, tc.file)
		}
		if got, err := FileFolder(tc.file); err != nil || got != tc.folder {
			t.Errorf("FileFolder(%q) = %q, %v; want %q", tc.file, got, err, tc.folder)
		}
	}
	if _, err := FileFolder("notes.txt"); err == nil {
		t.Error("FileFolder accepted a file that is not .mbox")
	}
}

func TestMaildirFlags(t *testing.T) {
	kw := []string{"$Junk", "", "Work"}
	tests := []struct {
		name string
		want []string
	}{
		{"1700000000.M1P2.host", nil},
		{"1700000000.M1P2.host:2,", nil},
		{"1700000000.M1P2.host:2,FRS", []string{`\Flagged`, `\Answered`, `\Seen`}},
		{"1700000000.M1P2.host,S=120:2,DPTac", []string{`\Draft`, `$Forwarded`, `\Deleted`, "$Junk", "Work"}},
		{"1700000000.M1P2.host!2,Sb", []string{`\Seen`}},
	}
	for _, tc := range tests {
		if got := MaildirFlags(tc.name, kw); !slices.Equal(got, tc.want) {
			t.Errorf("MaildirFlags(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestLFRoundTrips(t *testing.T) {
	for _, s := range []string{"", "a", "a\r\nb\r\n", "a\nb", "\n", "a\r\r\nb", "a\rb\r\n", "\r\n\r\n", "x\r", "\r\r\n", "a\r\n\nb"} {
		b := []byte(s)
		want := bytes.Equal(toCRLF(toLF(b)), b)
		if got := lfRoundTrips(b); got != want {
			t.Errorf("lfRoundTrips(%q) = %v, want %v", s, got, want)
		}
	}
}
