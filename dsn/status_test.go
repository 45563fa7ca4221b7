package dsn

import "testing"

func TestStatusFromReply(t *testing.T) {
	const fb = "9.9.9" // a fallback no reply could produce
	tests := []struct {
		reply, want string
	}{
		{"550 5.1.1 x", "5.1.1"},
		{"550 5.1.1 <x@y>: no such user", "5.1.1"},
		{"451 busy", "4.0.0"},
		{"250-ok", "2.0.0"},
		{"250-2.1.5 ok", "2.1.5"},
		{"250 2.0.0", "2.0.0"},
		{"550", "5.0.0"},
		{"421 4.7.0 too many connections", "4.7.0"},
		{"  452 4.2.2 mailbox full", "4.2.2"},
		{"550-5.7.1 first line\r\n550 5.7.1 second line", "5.7.1"},
		{"550 5.7.26\tunauthenticated", "5.7.26"},
		{"554 5.123.456 x", "5.123.456"},
		{"550 4.2.2 mismatched class", "5.2.2"},
		{"550 5.1.1234 detail too long", "5.0.0"},
		{"550 5.1. truncated", "5.0.0"},
		{"550 5.1.1: trailing colon", "5.0.0"},
		{"550 x.1.1 letters", "5.0.0"},
		{"550 3.1.1 bad class", "5.0.0"},
		{"garbage", fb},
		{"", fb},
		{"354 go ahead", fb},
		{"199 no", fb},
		{"5501 too many digits", fb},
		{"55 short", fb},
		{"5.1.1 no reply code", fb},
		{"connect: connection refused", fb},
	}
	for _, tt := range tests {
		if got := StatusFromReply(tt.reply, fb); got != tt.want {
			t.Errorf("StatusFromReply(%q) = %q, want %q", tt.reply, got, tt.want)
		}
	}
}

func TestValidStatus(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"2.0.0", true}, {"4.4.1", true}, {"5.7.26", true}, {"5.123.456", true},
		{"", false}, {"5", false}, {"5.1", false}, {"5.1.", false}, {"3.0.0", false},
		{"5.1234.1", false}, {"5.a.1", false}, {"5.1.1.1", false}, {"51.1.1", false},
	}
	for _, tt := range tests {
		if got := validStatus(tt.s); got != tt.want {
			t.Errorf("validStatus(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func TestIsSMTPReply(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"550 no", true}, {"451-more", true}, {"250", true},
		{"", false}, {"no MX", false}, {"5501", false}, {"650 x", false}, {"150 x", false},
	}
	for _, tt := range tests {
		if got := isSMTPReply(tt.s); got != tt.want {
			t.Errorf("isSMTPReply(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}
