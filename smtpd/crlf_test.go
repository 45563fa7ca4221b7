package smtpd

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/emersion/go-smtp"
)

func TestStrictReader(t *testing.T) {
	long := strings.Repeat("x", 998)
	tests := []struct {
		name string
		in   string
		max  int
		want int // 0 ok, else the SMTP code
	}{
		{"empty", "", 1000, 0},
		{"crlf lines", "Subject: a\r\n\r\nbody\r\n", 1000, 0},
		{"bare lf", "Subject: a\n\r\nbody\r\n", 1000, 554},
		{"bare lf at start", "\nx\r\n", 1000, 554},
		{"bare cr", "Subject: a\r\rbody\r\n", 1000, 554},
		{"cr at end", "body\r", 1000, 554},
		{"lf dot lf smuggling", "a\r\n\n.\n", 1000, 554},
		{"line at limit", long + "\r\n", 1000, 0},
		{"line over limit", long + "x\r\n", 1000, 500},
		{"no limit", long + long + "\r\n", 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// One byte at a time as well, so state across reads is checked.
			for _, r := range []io.Reader{strings.NewReader(tc.in), iotest.OneByteReader(strings.NewReader(tc.in))} {
				var out bytes.Buffer
				_, err := out.ReadFrom(&strictReader{r: r, max: tc.max})
				var se *smtp.SMTPError
				switch {
				case tc.want == 0 && err != nil:
					t.Fatalf("err = %v", err)
				case tc.want == 0 && out.String() != tc.in:
					t.Fatalf("data changed: %q", out.String())
				case tc.want != 0 && (!errors.As(err, &se) || se.Code != tc.want):
					t.Fatalf("err = %v, want code %d", err, tc.want)
				}
			}
		})
	}
}

// refStrict is the check a byte at a time, as strictReader first did it:
// the reference for the fast scan's choice of the first fault.
func refStrict(in []byte, max int) error {
	line, cr := 0, false
	for _, c := range in {
		switch {
		case cr && c != '\n':
			return errBareCR
		case c == '\n' && !cr:
			return errBareLF
		}
		cr = c == '\r'
		switch c {
		case '\n':
			line = 0
		case '\r':
		default:
			line++
			if max > 0 && line > max-2 {
				return errLineTooLong
			}
		}
	}
	if cr {
		return errBareCR
	}
	return nil
}

func FuzzStrictReader(f *testing.F) {
	for _, s := range []string{"a\r\n", "a\nb", "\r", "x\r\n.\r\n", "\r\r\n", strings.Repeat("y", 1200)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		// The same first fault as the byte loop, whatever the read sizes.
		for _, max := range []int{4, 12} {
			for _, r := range []io.Reader{bytes.NewReader(in), iotest.HalfReader(bytes.NewReader(in))} {
				_, err := io.Copy(io.Discard, &strictReader{r: r, max: max})
				if want := refStrict(in, max); err != want {
					t.Fatalf("max %d: err %v, want %v", max, err, want)
				}
			}
		}
		var out bytes.Buffer
		_, err := out.ReadFrom(&strictReader{r: bytes.NewReader(in), max: 1000})
		if err != nil {
			return
		}
		// Whatever passes has only CRLF line ends and short lines.
		for i, c := range in {
			if c == '\n' && (i == 0 || in[i-1] != '\r') {
				t.Fatalf("bare LF at %d passed", i)
			}
			if c == '\r' && (i == len(in)-1 || in[i+1] != '\n') {
				t.Fatalf("bare CR at %d passed", i)
			}
		}
		for _, line := range bytes.Split(in, []byte("\r\n")) {
			if len(line) > 998 {
				t.Fatalf("line of %d passed", len(line))
			}
		}
		if !bytes.Equal(out.Bytes(), in) {
			t.Fatal("data changed")
		}
	})
}
