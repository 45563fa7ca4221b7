package main

import (
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{in: "0", want: 0},
		{in: "1048576", want: 1048576},
		{in: "512B", want: 512},
		{in: "1K", want: 1024},
		{in: "1kb", want: 1024},
		{in: "1KiB", want: 1024},
		{in: "500M", want: 500 << 20},
		{in: "500MB", want: 500 << 20},
		{in: "2G", want: 2 << 30},
		{in: "2g", want: 2 << 30},
		{in: "1.5GiB", want: 3 << 29},
		{in: "1.5 GiB", want: 3 << 29},
		{in: " 3T ", want: 3 << 40},
		{in: "0.5K", want: 512},
		{in: ".5M", want: 512 << 10},
		{in: "1.1K", want: 1126}, // 1126.4 rounds to whole bytes
		{in: "8388607T", want: 8388607 << 40},
		{in: "", wantErr: "want a number"},
		{in: "M", wantErr: "want a number"},
		{in: "abc", wantErr: "want a number"},
		{in: "-5M", wantErr: "want a number"},
		{in: "+5M", wantErr: "want a number"},
		{in: "5X", wantErr: `unknown unit "X"`},
		{in: "5 MiBs", wantErr: "unknown unit"},
		{in: "1e3", wantErr: "unknown unit"},
		{in: "0x10", wantErr: "unknown unit"},
		{in: "1_000", wantErr: "unknown unit"},
		{in: "1.5", wantErr: "whole number"},
		{in: "1.5B", wantErr: "whole number"},
		{in: "1.2.3M", wantErr: "bad number"},
		{in: ".", wantErr: "bad number"},
		{in: "8388608T", wantErr: "out of range"},
		{in: "99999999999999999999", wantErr: "out of range"},
		{in: "9999999.5T", wantErr: "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseSize(%q) = %d, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0B"},
		{1023, "1023B"},
		{1024, "1KiB"},
		{1536, "1.5KiB"},
		{500 << 20, "500MiB"},
		{3 << 29, "1.5GiB"},
		{1<<20 - 1, "1MiB"}, // 1023.999KiB rounds up into the next unit
		{5 << 40, "5TiB"},
		{1 << 62, "4EiB"},
	}
	for _, tt := range tests {
		if got := formatSize(tt.in); got != tt.want {
			t.Errorf("formatSize(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestFormatSizeRoundTrip checks that what the tables print can be typed
// back into --quota.
func TestFormatSizeRoundTrip(t *testing.T) {
	for _, n := range []int64{1, 1024, 500 << 20, 3 << 29, 7 << 40} {
		s := formatSize(n)
		got, err := parseSize(s)
		if err != nil || got != n {
			t.Errorf("parseSize(formatSize(%d) = %q) = %d, %v", n, s, got, err)
		}
	}
}
