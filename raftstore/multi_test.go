package raftstore

import (
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

func encoded(t *testing.T, ct CommandType, v any) []byte {
	t.Helper()
	b, err := Encode(ct, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMultiEntry: the commands of a multi entry apply in order in one
// transaction, each with its own outcome and request id: a command retried
// alone after riding in a multi entry is recognised, and the reverse.
func TestMultiEntry(t *testing.T) {
	f := openTestFSM(t, vfs.NewMem())
	defer f.Close()
	a := encoded(t, cmdPut, kv{"a", "1"})
	bad := encoded(t, cmdPut, kv{"", "x"})
	b := encoded(t, cmdPut, kv{"b", "2"})
	a2 := encoded(t, cmdPut, kv{"a", "overwritten"})
	resp := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: EncodeMulti([][]byte{a, bad, b, a2})})
	mr, ok := resp.(MultiResponse)
	if !ok || len(mr) != 4 {
		t.Fatalf("response %#v, want a MultiResponse of 4", resp)
	}
	if mr[0] != nil || !IsCode(mr[1], CodeInvalid) || mr[2] != nil || mr[3] != nil {
		t.Fatalf("outcomes %v", mr)
	}
	for k, want := range map[byte]string{'a': "overwritten", 'b': "2"} {
		if v, ok, _ := f.Get([]byte{0x3f, k}); !ok || string(v) != want {
			t.Fatalf("%c = %q, want %q", k, v, want)
		}
	}
	if f.AppliedIndex() != 1 {
		t.Fatalf("applied %d", f.AppliedIndex())
	}
	// a retried alone: not applied again (a2 wrote last, a must not win).
	if r := f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: a}); r != nil {
		t.Fatalf("retry of a: %v", r)
	}
	if v, _, _ := f.Get([]byte{0x3f, 'a'}); string(v) != "overwritten" {
		t.Fatalf("retry of a applied again: a = %q", v)
	}
	// bad retried inside another multi: its first outcome comes back.
	c := encoded(t, cmdPut, kv{"c", "3"})
	mr = f.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: EncodeMulti([][]byte{bad, c})}).(MultiResponse)
	if !IsCode(mr[0], CodeInvalid) || mr[1] != nil {
		t.Fatalf("outcomes %v", mr)
	}
	// A replayed multi entry changes nothing.
	if r := f.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: EncodeMulti([][]byte{encoded(t, cmdPut, kv{"c", "replayed"})})}); r != nil {
		t.Fatalf("replay: %v", r)
	}
	if v, _, _ := f.Get([]byte{0x3f, 'c'}); string(v) != "3" {
		t.Fatalf("replayed multi applied: c = %q", v)
	}
}

func TestMultiEntryMalformed(t *testing.T) {
	a := encoded(t, cmdPut, kv{"a", "1"})
	for name, data := range map[string][]byte{
		"empty":     {byte(cmdMulti)},
		"truncated": append([]byte{byte(cmdMulti), 50}, a...),
		"zero":      {byte(cmdMulti), 0},
		"nested":    EncodeMulti([][]byte{EncodeMulti([][]byte{a})}),
	} {
		t.Run(name, func(t *testing.T) {
			f := openTestFSM(t, vfs.NewMem())
			defer f.Close()
			defer func() {
				if s, ok := recover().(string); !ok || !strings.HasPrefix(s, "raftstore: ") {
					t.Fatalf("want a raftstore panic, got %v", s)
				}
			}()
			f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data})
		})
	}
}

// TestAdvancedSignals: a waiter on Advanced wakes when an entry applies.
func TestAdvancedSignals(t *testing.T) {
	f := openTestFSM(t, vfs.NewMem())
	defer f.Close()
	ch := f.Advanced()
	select {
	case <-ch:
		t.Fatal("signalled before anything applied")
	default:
	}
	f.Apply(entry(t, 1, cmdPut, kv{"a", "1"}))
	select {
	case <-ch:
	default:
		t.Fatal("not signalled after an entry applied")
	}
}
