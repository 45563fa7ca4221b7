package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// A snapshot file is, in order:
//
//	magic           "clustermail raft snapshot\n" (26 bytes)
//	format version  uint16, big-endian (SnapshotFormat)
//	header length   uint32, big-endian
//	header          JSON (SnapshotHeader)
//	data            header.Size bytes: the state machine's snapshot, as Raft
//	                hands it out
//	checksum        SHA-256 of every byte before it (32 bytes)
//
// The checksum covers the header too, so a flipped bit anywhere is found
// before a restore replaces the cluster's state with it. The header is JSON
// so that later versions can add fields without a new format version.

const snapshotMagic = "clustermail raft snapshot\n"

// SnapshotFormat is the version of the snapshot file format written.
const SnapshotFormat = 1

// maxSnapshotHeader bounds the JSON header; it is a few hundred bytes.
const maxSnapshotHeader = 1 << 16

var (
	// ErrNotSnapshot means the file does not start with the snapshot magic.
	ErrNotSnapshot = errors.New("not a clustermail snapshot file")
	// ErrCorruptSnapshot means the file is truncated, or its checksum does
	// not match its content.
	ErrCorruptSnapshot = errors.New("corrupt snapshot file")
)

// SnapshotHeader describes the snapshot a file holds.
type SnapshotHeader struct {
	Index       uint64    `json:"index"`                 // last Raft log index the state includes
	Term        uint64    `json:"term"`                  // term of that entry
	RaftVersion int       `json:"raft_snapshot_version"` // Raft's snapshot format version
	Size        int64     `json:"size"`                  // bytes of data
	Created     time.Time `json:"created"`
	Node        string    `json:"node,omitempty"`    // the leader that took it
	Version     string    `json:"version,omitempty"` // clustermail version of that node
}

func (h SnapshotHeader) prefix() ([]byte, error) {
	js, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode snapshot header: %w", err)
	}
	b := make([]byte, 0, len(snapshotMagic)+6+len(js))
	b = append(b, snapshotMagic...)
	b = binary.BigEndian.AppendUint16(b, SnapshotFormat)
	b = binary.BigEndian.AppendUint32(b, uint32(len(js)))
	return append(b, js...), nil
}

// SnapshotFileSize is the size of the file WriteSnapshot writes for h.
func SnapshotFileSize(h SnapshotHeader) (int64, error) {
	p, err := h.prefix()
	if err != nil {
		return 0, err
	}
	return int64(len(p)) + h.Size + sha256.Size, nil
}

// WriteSnapshot writes a snapshot file of h and data, which must hold
// exactly h.Size bytes. It returns the number of bytes written.
func WriteSnapshot(w io.Writer, h SnapshotHeader, data io.Reader) (int64, error) {
	p, err := h.prefix()
	if err != nil {
		return 0, err
	}
	sum := sha256.New()
	mw := io.MultiWriter(w, sum)
	n, err := mw.Write(p)
	written := int64(n)
	if err != nil {
		return written, fmt.Errorf("write snapshot header: %w", err)
	}
	m, err := io.Copy(mw, io.LimitReader(data, h.Size))
	written += m
	if err != nil {
		return written, fmt.Errorf("write snapshot data: %w", err)
	}
	if m != h.Size {
		return written, fmt.Errorf("write snapshot data: got %d bytes, the snapshot has %d", m, h.Size)
	}
	n, err = w.Write(sum.Sum(nil))
	written += int64(n)
	if err != nil {
		return written, fmt.Errorf("write snapshot checksum: %w", err)
	}
	return written, nil
}

// SnapshotReader reads the data of a snapshot file. Its Read returns
// io.EOF only after the checksum matched; a mismatch, a truncated file or
// bytes after the checksum give an error wrapping ErrCorruptSnapshot.
type SnapshotReader struct {
	Header SnapshotHeader

	r    io.Reader
	sum  hash.Hash
	left int64
	err  error
}

// ReadSnapshot reads the header of a snapshot file and returns a reader of
// its data.
func ReadSnapshot(r io.Reader) (*SnapshotReader, error) {
	sum := sha256.New()
	tr := io.TeeReader(r, sum)
	magic := make([]byte, len(snapshotMagic))
	n, err := io.ReadFull(tr, magic)
	if n == 0 && isEOF(err) || string(magic[:n]) != snapshotMagic[:n] {
		return nil, ErrNotSnapshot
	}
	if err != nil {
		return nil, headerErr(err)
	}
	fixed := make([]byte, 6)
	if _, err := io.ReadFull(tr, fixed); err != nil {
		return nil, headerErr(err)
	}
	if v := binary.BigEndian.Uint16(fixed); v != SnapshotFormat {
		return nil, fmt.Errorf("snapshot file format %d is not supported (this clustermail reads format %d; a newer version wrote it?)", v, SnapshotFormat)
	}
	hl := binary.BigEndian.Uint32(fixed[2:])
	if hl > maxSnapshotHeader {
		return nil, fmt.Errorf("%w: header of %d bytes", ErrCorruptSnapshot, hl)
	}
	js := make([]byte, hl)
	if _, err := io.ReadFull(tr, js); err != nil {
		return nil, headerErr(err)
	}
	var h SnapshotHeader
	if err := json.Unmarshal(js, &h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrCorruptSnapshot, err)
	}
	if h.Size < 0 {
		return nil, fmt.Errorf("%w: negative size %d", ErrCorruptSnapshot, h.Size)
	}
	return &SnapshotReader{Header: h, r: r, sum: sum, left: h.Size}, nil
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) }

// headerErr tells a file that ends in its header from a failing reader.
func headerErr(err error) error {
	if isEOF(err) {
		return fmt.Errorf("%w: truncated header", ErrCorruptSnapshot)
	}
	return fmt.Errorf("read snapshot header: %w", err)
}

// Read reads the snapshot data.
func (s *SnapshotReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.left == 0 {
		s.err = s.finish()
		return 0, s.err
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.r.Read(p)
	s.sum.Write(p[:n])
	s.left -= int64(n)
	switch {
	case errors.Is(err, io.EOF) && s.left > 0:
		s.err = fmt.Errorf("%w: truncated data (%d of %d bytes)", ErrCorruptSnapshot, s.Header.Size-s.left, s.Header.Size)
		return n, s.err
	case errors.Is(err, io.EOF):
		err = nil // the checksum is still to come
	case err != nil:
		s.err = err
	}
	return n, err
}

// finish checks the checksum and that nothing follows it.
func (s *SnapshotReader) finish() error {
	want := s.sum.Sum(nil)
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(s.r, got); err != nil {
		if isEOF(err) {
			return fmt.Errorf("%w: truncated checksum", ErrCorruptSnapshot)
		}
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%w: checksum mismatch (the file was changed or damaged)", ErrCorruptSnapshot)
	}
	var one [1]byte
	if n, _ := io.ReadFull(s.r, one[:]); n > 0 {
		return fmt.Errorf("%w: bytes after the checksum", ErrCorruptSnapshot)
	}
	return io.EOF
}

// VerifySnapshot reads a whole snapshot file and checks it.
func VerifySnapshot(r io.Reader) (SnapshotHeader, error) {
	sr, err := ReadSnapshot(r)
	if err != nil {
		return SnapshotHeader{}, err
	}
	if _, err := io.Copy(io.Discard, sr); err != nil {
		return sr.Header, err
	}
	return sr.Header, nil
}
