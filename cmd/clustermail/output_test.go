package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"clustermail/api"
)

func TestPrintJSON(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"nil slice is an empty array", []api.Domain(nil), "[]\n"},
		{"empty slice", []api.Alias{}, "[]\n"},
		{"indented object", api.Alias{Alias: "a@x.test", Targets: []string{"b@x.test"}},
			"{\n  \"alias\": \"a@x.test\",\n  \"targets\": [\n    \"b@x.test\"\n  ]\n}\n"},
		{"no HTML escaping", []string{"<a&b>"}, "[\n  \"<a&b>\"\n]\n"},
		{"embedded user with password", userAddResult{User: api.User{Address: "a@x.test", Node: "n1"}, Password: "pw"},
			"{\n  \"address\": \"a@x.test\",\n  \"node\": \"n1\",\n  \"quota\": 0,\n  \"created\": \"0001-01-01T00:00:00Z\",\n  \"password\": \"pw\"\n}\n"},
		{"password omitted when not generated", userAddResult{User: api.User{Address: "a@x.test"}},
			"{\n  \"address\": \"a@x.test\",\n  \"node\": \"\",\n  \"quota\": 0,\n  \"created\": \"0001-01-01T00:00:00Z\"\n}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := printJSON(&b, tt.in); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestTable(t *testing.T) {
	tests := []struct {
		name   string
		header []string
		rows   [][]string
		want   string
	}{
		{
			name:   "aligned with capital header",
			header: []string{"name", "gossip-addr"},
			rows:   [][]string{{"node1", "10.0.0.1:7946"}, {"n2", "10.0.0.2:7946"}},
			want: "NAME   GOSSIP-ADDR\n" +
				"node1  10.0.0.1:7946\n" +
				"n2     10.0.0.2:7946\n",
		},
		{
			name:   "empty cell becomes a dash",
			header: []string{"a", "b"},
			rows:   [][]string{{"", "x"}},
			want:   "A  B\n-  x\n",
		},
		{
			name:   "control characters cannot break columns or reach the terminal",
			header: []string{"a", "b"},
			rows:   [][]string{{"x\ty\nz\x1b[31m", "ok"}},
			want:   "A           B\nx y z [31m  ok\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			tab := newTable(&b, tt.header...)
			for _, r := range tt.rows {
				tab.row(r...)
			}
			if err := tab.flush(); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got\n%q\nwant\n%q", b.String(), tt.want)
			}
		})
	}
}

func TestPrintKV(t *testing.T) {
	var b bytes.Buffer
	err := printKV(&b, []kv{{"node", "n1"}, {"commit index", "42"}, {"leader", ""}})
	if err != nil {
		t.Fatal(err)
	}
	want := "node:         n1\ncommit index: 42\nleader:       -\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"eleven char", 10, "eleven ch…"},
		{"ünïcödé wörds", 5, "ünïc…"},
		{"x", 0, ""},
	}
	for _, tt := range tests {
		if got := truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestFormatHelpers(t *testing.T) {
	if got := formatQuota(0); got != "unlimited" {
		t.Errorf("formatQuota(0) = %q", got)
	}
	if got := formatQuota(2 << 30); got != "2GiB" {
		t.Errorf("formatQuota(2G) = %q", got)
	}
	if got := formatTime(time.Time{}); got != "-" {
		t.Errorf("formatTime(zero) = %q", got)
	}
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	if got := formatTime(ts); got != "2026-01-02 03:04:05" {
		t.Errorf("formatTime = %q", got)
	}
	if got := joinOr(nil, "none"); got != "none" {
		t.Errorf("joinOr(nil) = %q", got)
	}
	if got := joinOr([]string{"a", "b"}, "none"); got != "a, b" {
		t.Errorf("joinOr = %q", got)
	}
	if got := strings.Join(splitTargets([]string{"a@x, b@x", "c@x", ",", ""}), "|"); got != "a@x|b@x|c@x" {
		t.Errorf("splitTargets = %q", got)
	}
}
