package outbound

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func parse(s string) (reply, error) {
	return readReply(bufio.NewReaderSize(strings.NewReader(s), maxReplyLine))
}

func TestReadReply(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string // String() of the reply
		wantErr error
	}{
		{"enhanced code kept", "550 5.1.1 <x@y>: no such user\r\n", "550 5.1.1 <x@y>: no such user", nil},
		{"code derived from class", "250 ok\r\n", "250 2.0.0 ok", nil},
		{"bare code", "421\r\n", "421 4.0.0", nil},
		{"class mismatch not believed", "250 5.1.1 odd\r\n", "250 2.0.0 5.1.1 odd", nil},
		{"3xx gets no derived code", "354 go ahead\r\n", "354 go ahead", nil},
		{"multi-line joined, repeated code dropped", "550-5.7.1 one\r\n550-5.7.1 two\r\n550 5.7.1 three\r\n", "550 5.7.1 one two three", nil},
		{"multi-line without code", "451-first\r\n451 second\r\n", "451 4.0.0 first second", nil},
		{"bare LF accepted", "250 ok\n", "250 2.0.0 ok", nil},
		{"controls removed", "550 5.0.0 a\tb\x00c\x1bd\r\n", "550 5.0.0 a b c d", nil},
		{"invalid UTF-8 replaced", "550 5.0.0 caf\xe9\r\n", "550 5.0.0 caf?", nil},
		{"stray CR inside", "550 5.0.0 a\rInjected: x\r\n", "550 5.0.0 a Injected: x", nil},
		{"EHLO reply", "250-mx.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n", "250 2.0.0 mx.example PIPELINING STARTTLS", nil},
		{"codes differ", "250-a\r\n550 b\r\n", "", errProtocol},
		{"no code", "hello\r\n", "", errProtocol},
		{"code out of range", "650 no\r\n", "", errProtocol},
		{"bad separator", "250_ok\r\n", "", errProtocol},
		{"line too long", "250 " + strings.Repeat("x", maxReplyLine) + "\r\n", "", errProtocol},
		{"too many lines", strings.Repeat("250-x\r\n", maxReplyLines) + "250 x\r\n", "", errProtocol},
		{"connection closed", "", "", io.EOF},
		{"cut mid-line", "250 o", "", io.ErrUnexpectedEOF},
		{"cut mid-reply", "250-a\r\n", "", io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parse(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.String(); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReplyTextBounded(t *testing.T) {
	in := strings.Repeat("550-5.7.1 "+strings.Repeat("é", 200)+"\r\n", 20) + "550 5.7.1 end\r\n"
	r, err := parse(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.text) > maxReplyText || !utf8.ValidString(r.text) {
		t.Fatalf("text of %d bytes, valid UTF-8 %v", len(r.text), utf8.ValidString(r.text))
	}
}

// FuzzReplyToResult feeds arbitrary server output to the reply reader and
// checks what would go into a Result: one clean line, a code and an
// enhanced code of the same class, a Status that matches the class, and a
// text that reads back the same.
func FuzzReplyToResult(f *testing.F) {
	for _, s := range []string{
		"250 2.0.0 ok\r\n",
		"550-5.1.1 a\r\n550 5.1.1 b\r\n",
		"451 4.7.1 greylisted, try again\r\n",
		"421\r\n",
		"354 go\r\n",
		"250-mx\r\n250-SIZE 1000\r\n250 8BITMIME\r\n",
		"550 5.0.0 a\rb\x00\xff\r\n",
		"250 4.1.1 x\r\n",
		"5",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := readReply(bufio.NewReaderSize(strings.NewReader(string(data)), maxReplyLine))
		if err != nil {
			return
		}
		s := r.String()
		if strings.ContainsAny(s, "\r\n\x00") || !utf8.ValidString(s) {
			t.Fatalf("reply %q is not one clean line", s)
		}
		if len(r.text) > maxReplyText {
			t.Fatalf("text of %d bytes", len(r.text))
		}
		if !strings.HasPrefix(s, strconv.Itoa(r.code)) || r.code < 200 || r.code > 599 {
			t.Fatalf("reply %q: code %d", s, r.code)
		}
		switch c := r.class(); c {
		case 2, 4, 5:
			if !strings.HasPrefix(r.enhanced, strconv.Itoa(c)+".") {
				t.Fatalf("reply %q: enhanced code %q of another class", s, r.enhanced)
			}
		}
		want := map[int]Status{2: Delivered, 3: Deferred, 4: Deferred, 5: Failed}[r.class()]
		if r.status() != want {
			t.Fatalf("reply %q: status %v", s, r.status())
		}
		again, err := parse(s + "\r\n")
		if err != nil {
			t.Fatalf("reply %q does not read back: %v", s, err)
		}
		if again.String() != s {
			t.Fatalf("reply %q reads back as %q", s, again.String())
		}
	})
}
