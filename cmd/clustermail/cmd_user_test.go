package main

import (
	"strings"
	"testing"
)

func TestReadPassword(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{name: "LF", in: "secret\n", want: "secret"},
		{name: "CRLF", in: "secret\r\n", want: "secret"},
		{name: "no newline", in: "secret", want: "secret"},
		{name: "first line only", in: "one\ntwo\n", want: "one"},
		{name: "spaces kept", in: " pass word \n", want: " pass word "},
		{name: "longest line", in: strings.Repeat("x", maxPasswordLine) + "\n", want: strings.Repeat("x", maxPasswordLine)},
		{name: "empty", in: "", wantErr: "empty password"},
		{name: "empty line", in: "\nsecret\n", wantErr: "empty password"},
		{name: "CR only", in: "\r\n", wantErr: "empty password"},
		{name: "too long", in: strings.Repeat("x", maxPasswordLine+1), wantErr: "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readPassword(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("readPassword = %q, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("readPassword = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestGeneratePassword(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		p, err := generatePassword()
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != generatedPasswordLen {
			t.Fatalf("len(%q) = %d, want %d", p, len(p), generatedPasswordLen)
		}
		if strings.Trim(p, passwordAlphabet) != "" {
			t.Fatalf("%q has characters outside the alphabet", p)
		}
		if seen[p] {
			t.Fatalf("%q generated twice", p)
		}
		seen[p] = true
	}
}
