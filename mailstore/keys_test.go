package mailstore

import (
	"bytes"
	"testing"
)

func TestPrefixEnd(t *testing.T) {
	tests := []struct{ in, want []byte }{
		{[]byte{1, 2, 3}, []byte{1, 2, 4}},
		{[]byte{1, 2, 0xff}, []byte{1, 3}},
		{[]byte{1, 0xff, 0xff}, []byte{2}},
		{[]byte{0xff}, nil},
	}
	for _, tt := range tests {
		if got := prefixEnd(tt.in); !bytes.Equal(got, tt.want) {
			t.Errorf("prefixEnd(%x) = %x, want %x", tt.in, got, tt.want)
		}
	}
}

func TestKeyOrder(t *testing.T) {
	// UIDs and ids must sort numerically, across byte boundaries.
	pairs := [][2]uint32{{1, 2}, {255, 256}, {65535, 65536}, {1 << 24, 1<<24 + 1}, {1, 1 << 31}}
	for _, p := range pairs {
		a, b := messageKey(alice, 7, p[0]), messageKey(alice, 7, p[1])
		if bytes.Compare(a, b) >= 0 {
			t.Errorf("uid %d does not sort before %d", p[0], p[1])
		}
		if uidOfKey(a) != p[0] {
			t.Errorf("uidOfKey = %d, want %d", uidOfKey(a), p[0])
		}
	}
	if bytes.Compare(mailboxKey(alice, 255), mailboxKey(alice, 256)) >= 0 {
		t.Error("mailbox ids do not sort numerically")
	}
}

func TestAccountPrefixIsolation(t *testing.T) {
	// Length prefixes keep "a@b.c"'s range free of "a@b.cd"'s keys.
	short, long := "a@b.c", "a@b.cd"
	p := accountPrefix(tableMessage, short)
	end := prefixEnd(p)
	for _, k := range [][]byte{messageKey(long, 1, 1), messageKey(long, 0, 0), accountKey(short)} {
		if bytes.Compare(k, p) >= 0 && bytes.Compare(k, end) < 0 {
			t.Errorf("key %x falls inside %s's message range", k, short)
		}
	}
	if k := messageKey(short, 1<<63, 1<<31); bytes.Compare(k, p) < 0 || bytes.Compare(k, end) >= 0 {
		t.Errorf("own key %x outside range", k)
	}
}
