package backup

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func snapshotFile(t *testing.T, data string) ([]byte, SnapshotHeader) {
	t.Helper()
	h := SnapshotHeader{Index: 1234, Term: 7, RaftVersion: 1, Size: int64(len(data)), Created: time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC), Node: "n1", Version: "test"}
	var b bytes.Buffer
	n, err := WriteSnapshot(&b, h, strings.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	size, err := SnapshotFileSize(h)
	if err != nil || n != size || int64(b.Len()) != size {
		t.Fatalf("wrote %d bytes (buffer %d), SnapshotFileSize says %d (%v)", n, b.Len(), size, err)
	}
	return b.Bytes(), h
}

func TestSnapshotRoundTrip(t *testing.T) {
	for _, data := range []string{"", "state", strings.Repeat("0123456789", 100000)} {
		file, h := snapshotFile(t, data)
		sr, err := ReadSnapshot(bytes.NewReader(file))
		if err != nil {
			t.Fatal(err)
		}
		if sr.Header != h {
			t.Errorf("header %+v, want %+v", sr.Header, h)
		}
		got, err := io.ReadAll(sr)
		if err != nil || string(got) != data {
			t.Errorf("data of %d bytes: got %d bytes, %v", len(data), len(got), err)
		}
	}
}

func TestSnapshotCorruption(t *testing.T) {
	file, _ := snapshotFile(t, strings.Repeat("state data ", 1000))
	flip := func(i int) []byte {
		b := bytes.Clone(file)
		b[i] ^= 0x01
		return b
	}
	headerEnd := len(snapshotMagic) + 6 + 20 // somewhere in the JSON header
	tests := []struct {
		name string
		file []byte
		want error  // errors.Is target
		msg  string // or a message fragment
	}{
		{"empty", nil, ErrNotSnapshot, ""},
		{"not a snapshot", []byte("From someone\n"), ErrNotSnapshot, ""},
		{"truncated magic", file[:10], ErrCorruptSnapshot, "truncated header"},
		{"newer format", func() []byte { b := bytes.Clone(file); b[len(snapshotMagic)+1] = 9; return b }(), nil, "format 9 is not supported"},
		{"bit flip in the header", flip(headerEnd), ErrCorruptSnapshot, ""},
		{"bit flip in the data", flip(len(file) / 2), ErrCorruptSnapshot, "checksum mismatch"},
		{"bit flip in the checksum", flip(len(file) - 1), ErrCorruptSnapshot, "checksum mismatch"},
		{"truncated data", file[:len(file)/2], ErrCorruptSnapshot, "truncated data"},
		{"truncated checksum", file[:len(file)-5], ErrCorruptSnapshot, "truncated checksum"},
		{"trailing bytes", append(bytes.Clone(file), 'x'), ErrCorruptSnapshot, "bytes after the checksum"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifySnapshot(bytes.NewReader(tc.file))
			if err == nil {
				t.Fatal("verified")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if tc.msg != "" && !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q, want it to say %q", err, tc.msg)
			}
		})
	}
	if _, err := VerifySnapshot(bytes.NewReader(file)); err != nil {
		t.Errorf("the intact file: %v", err)
	}
}

func TestWriteSnapshotShortData(t *testing.T) {
	h := SnapshotHeader{Size: 10}
	if _, err := WriteSnapshot(io.Discard, h, strings.NewReader("short")); err == nil {
		t.Error("wrote a snapshot with less data than its header says")
	}
}
