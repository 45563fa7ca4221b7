package mailstore

import (
	"errors"
	"reflect"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	acct := accountRecord{NextMailboxID: 7, NextBodyID: 1 << 40, LastUIDValidity: 1 << 31, Messages: 3, Bytes: 5 << 30}
	box := mailboxRecord{Name: "Work/Ünï", UIDValidity: 1, UIDNext: 1<<32 - 1, HighestModSeq: 1 << 50, Messages: 2, Unseen: 1, Bytes: 99, SpecialUse: `\Sent`, Subscribed: true}
	msg := messageRecord{ModSeq: 9, Date: -1, Zone: -18000, Size: 1 << 33, BodyID: 4, Flags: []string{`\Seen`, "$x"}}
	dd := dedupRecord{UID: 5, Created: 1700000000}
	tests := []struct {
		name string
		in   interface{ encode() []byte }
		out  interface{ decode([]byte) error }
	}{
		{"account", &acct, &accountRecord{}},
		{"mailbox", &box, &mailboxRecord{}},
		{"message", &msg, &messageRecord{}},
		{"message without flags", &messageRecord{ModSeq: 1}, &messageRecord{}},
		{"dedup", &dd, &dedupRecord{}},
	}
	for _, tt := range tests {
		b := tt.in.encode()
		if err := tt.out.decode(b); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !reflect.DeepEqual(tt.in, tt.out) {
			t.Errorf("%s: %+v -> %+v", tt.name, tt.in, tt.out)
		}
		for i := range len(b) { // every truncation is detected, never a panic
			if err := tt.out.decode(b[:i]); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s truncated to %d: %v", tt.name, i, err)
			}
		}
	}
}
