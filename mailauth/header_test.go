package mailauth

import (
	"bytes"
	"strings"
	"testing"
)

func TestStripForged(t *testing.T) {
	const id = "mx1.hosted.test"
	tests := []struct{ name, in, want string }{
		{"ours goes",
			"Authentication-Results: mx1.hosted.test; dmarc=pass\r\nSubject: x\r\n\r\nbody\r\n",
			"Subject: x\r\n\r\nbody\r\n"},
		{"others stay",
			"Authentication-Results: mx.other.test; spf=pass\r\nSubject: x\r\n\r\nbody\r\n",
			"Authentication-Results: mx.other.test; spf=pass\r\nSubject: x\r\n\r\nbody\r\n"},
		{"folded, any case, comment and quotes",
			"Received: a\r\nauthentication-results : (forged) \"MX1.Hosted.Test\"\r\n\t; spf=pass\r\n  smtp.mailfrom=a@b\r\nX: 1\r\nAuthentication-Results: (c (nested)) mx1.hosted.test 1; none\r\n\r\nb\r\n",
			"Received: a\r\nX: 1\r\n\r\nb\r\n"},
		{"id as a prefix of another is not ours",
			"Authentication-Results: mx1.hosted.test.evil; none\r\nAuthentication-Results: mx1.hosted.tes; none\r\n\r\n",
			"Authentication-Results: mx1.hosted.test.evil; none\r\nAuthentication-Results: mx1.hosted.tes; none\r\n\r\n"},
		{"the body is not the header",
			"Subject: x\r\n\r\nAuthentication-Results: mx1.hosted.test; dmarc=pass\r\n",
			"Subject: x\r\n\r\nAuthentication-Results: mx1.hosted.test; dmarc=pass\r\n"},
		{"no empty line, last field unterminated",
			"Subject: x\r\nAuthentication-Results: mx1.hosted.test; none",
			"Subject: x\r\n"},
		{"a similar name is another field",
			"Authentication-Results-Original: mx1.hosted.test; none\r\n\r\n",
			"Authentication-Results-Original: mx1.hosted.test; none\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(StripForged([]byte(tc.in), id)); got != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestAuthservIDOf(t *testing.T) {
	for in, want := range map[string]string{
		"mx.test; spf=pass":          "mx.test",
		"  mx.test 1 ; none":         "mx.test",
		"(c) mx.test;none":           "mx.test",
		`"mx.te\st"; none`:           "mx.test",
		"(unterminated mx.test; one": "",
		`"unterminated`:              "",
		"":                           "",
	} {
		if got := authservIDOf(in); got != want {
			t.Errorf("authservIDOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzStripForged: whatever the input, stripping keeps the body, only
// removes whole header fields, leaves none of ours behind, and is
// idempotent.
func FuzzStripForged(f *testing.F) {
	for _, s := range []string{
		"Authentication-Results: mx1.hosted.test; dmarc=pass\r\nSubject: x\r\n\r\nbody\r\n",
		"authentication-results:(c)\"mx1.hosted.test\"\r\n ; spf=pass\r\n\r\n",
		"Authentication-Results: other.test; none\r\n\r\nAuthentication-Results: mx1.hosted.test; none\r\n",
		" leading continuation\r\nAuthentication-Results: mx1.hosted.test\r\n",
		"Authentication-Results: (((mx1.hosted.test\n\nx",
		"no colon line\nAuthentication-Results:mx1.hosted.test;\r\n\t(\\)) x\n",
		"",
	} {
		f.Add([]byte(s))
	}
	const id = "mx1.hosted.test"
	f.Fuzz(func(t *testing.T, msg []byte) {
		out := StripForged(msg, id)
		end := headerEnd(msg)
		if !bytes.HasSuffix(out, msg[end:]) {
			t.Fatalf("body changed")
		}
		for _, fl := range headerFields(out) {
			if strings.EqualFold(fl.name, authResultsField) && strings.EqualFold(authservIDOf(fl.value(out)), id) {
				t.Fatalf("our field left in %q", out)
			}
		}
		// out is msg with whole fields taken out: each field of out is one of msg.
		in := map[string]int{}
		for _, fl := range headerFields(msg) {
			in[string(msg[fl.start:fl.end])]++
		}
		for _, fl := range headerFields(out) {
			k := string(out[fl.start:fl.end])
			if in[k] == 0 {
				t.Fatalf("field %q of the output was not in the input", k)
			}
			in[k]--
		}
		if again := StripForged(out, id); !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q then %q", out, again)
		}
	})
}

// headerEnd is where the header section of msg ends (the body starts).
func headerEnd(msg []byte) int {
	fs := headerFields(msg)
	if len(fs) == 0 {
		return 0
	}
	return fs[len(fs)-1].end
}
