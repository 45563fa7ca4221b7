package mailstore

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestNormalizeMailbox(t *testing.T) {
	tests := []struct {
		in, want string
		err      error
	}{
		{"INBOX", "INBOX", nil},
		{"inbox", "INBOX", nil},
		{"InBoX/Sub/x", "INBOX/Sub/x", nil},
		{"Inboxes", "Inboxes", nil},
		{"Work/Sub", "Work/Sub", nil},
		{"Ünïcødé/日本", "Ünïcødé/日本", nil},
		{"with space", "with space", nil},
		{"", "", ErrBadName},
		{"/x", "", ErrBadName},
		{"x/", "", ErrBadName},
		{"a//b", "", ErrBadName},
		{"a*", "", ErrBadName},
		{"a%", "", ErrBadName},
		{"tab\t", "", ErrBadName},
		{"\xff", "", ErrBadName},
		{strings.Repeat("x", maxNameLen+1), "", ErrBadName},
	}
	for _, tt := range tests {
		got, err := normalizeMailbox(tt.in)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("normalizeMailbox(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestNormalizeAccount(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"Alice@Example.COM", "alice@example.com", true},
		{"ünï@example.com", "ünï@example.com", true},
		{"", "", false},
		{"alice", "", false},
		{"al ice@example.com", "", false},
		{"alice@example.com\r", "", false},
		{"\xff@example.com", "", false},
		{strings.Repeat("a", 320) + "@x", "", false},
	}
	for _, tt := range tests {
		got, err := normalizeAccount(tt.in)
		if got != tt.want || (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrBadAccount)) {
			t.Errorf("normalizeAccount(%q) = %q, %v", tt.in, got, err)
		}
	}
}

func TestNormalizeFlags(t *testing.T) {
	tests := []struct {
		in   []string
		want []string
		err  bool
	}{
		{nil, []string{}, false},
		{[]string{`\Seen`, `\seen`, "$Junk", "$junk", `\Recent`, `\RECENT`}, []string{`\Seen`, "$Junk"}, false},
		{[]string{`\Answered`, `\Flagged`, `\Deleted`, `\Draft`, "NonJunk"}, []string{`\Answered`, `\Flagged`, `\Deleted`, `\Draft`, "NonJunk"}, false},
		{[]string{""}, nil, true},
		{[]string{`\`}, nil, true},
		{[]string{`\*`}, nil, true},
		{[]string{"a b"}, nil, true},
		{[]string{"(x)"}, nil, true},
		{[]string{"x]"}, nil, true},
		{[]string{`a\b`}, nil, true},
		{[]string{"ünï"}, nil, true},
	}
	for _, tt := range tests {
		got, err := normalizeFlags(tt.in)
		if (err != nil) != tt.err || (err != nil && !errors.Is(err, ErrBadFlag)) || (!tt.err && !slices.Equal(got, tt.want)) {
			t.Errorf("normalizeFlags(%q) = %q, %v", tt.in, got, err)
		}
	}
}

func TestApplyFlags(t *testing.T) {
	tests := []struct {
		cur     []string
		op      FlagOp
		flags   []string
		want    []string
		changed bool
	}{
		{nil, FlagsAdd, []string{`\Seen`}, []string{`\Seen`}, true},
		{[]string{`\Seen`}, FlagsAdd, []string{`\SEEN`}, []string{`\Seen`}, false},
		{[]string{`\Seen`, "$A"}, FlagsRemove, []string{"$a"}, []string{`\Seen`}, true},
		{[]string{`\Seen`}, FlagsRemove, []string{"$a"}, []string{`\Seen`}, false},
		{[]string{`\Seen`, "$A"}, FlagsSet, []string{"$a", `\seen`}, []string{`\Seen`, "$A"}, false},
		{[]string{`\Seen`}, FlagsSet, []string{}, nil, true},
		{nil, FlagsSet, []string{}, nil, false},
	}
	for _, tt := range tests {
		got, changed := applyFlags(tt.cur, tt.op, tt.flags)
		if changed != tt.changed || !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
			t.Errorf("applyFlags(%q, %d, %q) = %q, %v; want %q, %v", tt.cur, tt.op, tt.flags, got, changed, tt.want, tt.changed)
		}
	}
}
