package routing

import (
	"bytes"
	"strings"
	"testing"
)

// TestReadBody: a body put by another node is read whole whether its
// length is announced or not, and refused when short or over maxBody.
func TestReadBody(t *testing.T) {
	body := strings.Repeat("x", 40000)
	cases := []struct {
		name    string
		in      string
		length  int64
		wantErr bool
	}{
		{"announced", body, int64(len(body)), false},
		{"unannounced (chunked)", body, -1, false},
		{"empty", "", 0, false},
		{"shorter than announced", body[:100], 200, true},
		{"announced over the limit", "", maxBody + 1, true},
	}
	for _, c := range cases {
		got, err := readBody(strings.NewReader(c.in), c.length)
		if (err != nil) != c.wantErr {
			t.Errorf("%s: err = %v, want error %v", c.name, err, c.wantErr)
			continue
		}
		if err == nil && !bytes.Equal(got, []byte(c.in)) {
			t.Errorf("%s: read %d bytes, want %d", c.name, len(got), len(c.in))
		}
	}
}
