package pop3d

import (
	"bufio"
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want command
		err  error
	}{
		{in: "STAT", want: command{name: "STAT"}},
		{in: "stat", want: command{name: "STAT"}},
		{in: "LIST 1", want: command{name: "LIST", args: []string{"1"}}},
		{in: "top 1 10", want: command{name: "TOP", args: []string{"1", "10"}}},
		{in: "LIST 1 ", want: command{name: "LIST", args: []string{"1"}}},
		{in: "LIST  1", want: command{name: "LIST", args: []string{"1"}}},
		{in: "USER alice@example.test", want: command{name: "USER", args: []string{"alice@example.test"}}},
		{in: "PASS two words ", want: command{name: "PASS", args: []string{"two words "}}},
		{in: "PASS  lead", want: command{name: "PASS", args: []string{" lead"}}},
		{in: "PASS", want: command{name: "PASS"}},
		{in: "PASS pässwörd", want: command{name: "PASS", args: []string{"pässwörd"}}},
		{in: "XTND XMIT", want: command{name: "XTND", args: []string{"XMIT"}}},
		{in: "", err: errEmptyCommand},
		{in: " STAT", err: errBadKeyword},
		{in: "ST4T", err: errBadKeyword},
		{in: "GET / HTTP/1.1", want: command{name: "GET", args: []string{"/", "HTTP/1.1"}}},
		{in: "NOOP\x00", err: errBadChars},
		{in: "US\rER a", err: errBadChars},
		{in: "USER a\tb", err: errBadChars},
		{in: "\x16\x03\x01", err: errBadChars},
		{in: "PASS \xff\xfe", err: errBadChars},
		{in: "ABCDEFGHIJKLMNOPQ", err: errBadKeyword},
	} {
		got, err := parseCommand([]byte(tc.in))
		if !errors.Is(err, tc.err) {
			t.Errorf("parseCommand(%q) error = %v, want %v", tc.in, err, tc.err)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseCommand(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseNumber(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"1", 1, true},
		{"0", 0, true},
		{"007", 7, true},
		{"99999999999999999999", 1 << 30, true},
		{"", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"1a", 0, false},
		{"١", 0, false}, // Arabic-Indic digit one
	} {
		got, ok := parseNumber(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseNumber(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestReadLine(t *testing.T) {
	const size = 16 // bufio's minimum buffer
	for _, tc := range []struct {
		name  string
		in    string
		limit int
		want  []string // lines read in turn; "!" + error text for an error
	}{
		{"crlf", "STAT\r\nNOOP\r\n", size, []string{"STAT", "NOOP", "!EOF"}},
		{"bare lf", "STAT\nNOOP\r\n", size, []string{"STAT", "NOOP", "!EOF"}},
		{"empty line", "\r\n", size, []string{"", "!EOF"}},
		{"partial line at eof", "STAT", size, []string{"!EOF"}},
		{"at limit", "0123456789ABCD\r\n", size, []string{"0123456789ABCD"}},
		{"over a smaller limit", "0123456789\r\nNOOP\r\n", 8, []string{"!" + errLineTooLong.Error(), "NOOP"}},
		{"over the buffer, dropped", strings.Repeat("x", 40) + "\r\nNOOP\r\n", size, []string{"!" + errLineTooLong.Error(), "NOOP"}},
		{"endless line", strings.Repeat("x", 20*size), size, []string{"!" + errLineFlood.Error()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tc.in), size)
			for i, want := range tc.want {
				line, err := readLine(r, tc.limit)
				got := string(line)
				if err != nil {
					got = "!" + err.Error()
				}
				if got != want {
					t.Fatalf("line %d: got %q, want %q", i, got, want)
				}
			}
		})
	}
}

// FuzzParseCommand checks that no line panics the parser and that what it
// accepts is well-formed: an upper-case alphabetic keyword and, except for
// PASS, non-empty arguments without spaces.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"STAT", "LIST 1", "TOP 1 10", "PASS a b ", "USER x", "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
		"", " ", "\x00", "RETR \xff", "CAPA\r", "DELE  2 ", "é"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		cmd, err := parseCommand(line)
		if err != nil {
			return
		}
		if bytes.ContainsFunc(line, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("accepted control characters in %q", line)
		}
		if cmd.name == "" || strings.ToUpper(cmd.name) != cmd.name || strings.Trim(cmd.name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			t.Fatalf("bad keyword %q from %q", cmd.name, line)
		}
		for _, a := range cmd.args {
			if a == "" || cmd.name != "PASS" && strings.Contains(a, " ") {
				t.Fatalf("bad argument %q from %q", a, line)
			}
		}
		if cmd.name == "PASS" && len(cmd.args) > 1 {
			t.Fatalf("PASS split into %q", cmd.args)
		}
		// Numbers found in arguments parse without panicking either.
		for _, a := range cmd.args {
			if n, ok := parseNumber(a); ok && (n < 0 || n > 1<<30) {
				t.Fatalf("parseNumber(%q) = %d", a, n)
			}
		}
	})
}
