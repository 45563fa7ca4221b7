package mailstore

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Record values start with a format byte so fields can be added later; a
// decoder ignores trailing bytes it does not know.
const recordFormat = 1

// accountRecord holds per-account allocators and the usage totals that
// quotas read. It is rewritten in the same batch as every change.
type accountRecord struct {
	NextMailboxID   uint64
	NextBodyID      uint64
	LastUIDValidity uint32 // largest UIDVALIDITY handed out in this account
	Messages        int64  // usage: messages in all mailboxes
	Bytes           int64  // usage: sum of their sizes
}

// mailboxRecord is one mailbox. Counters are maintained incrementally so
// that STATUS/LIST need not scan messages.
type mailboxRecord struct {
	Name          string
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	Messages      int64
	Unseen        int64
	Bytes         int64
	SpecialUse    string
	Subscribed    bool
}

// messageRecord is a message's metadata; the body lives under BodyID.
type messageRecord struct {
	ModSeq uint64
	Date   int64 // internal date, Unix nanoseconds
	Zone   int32 // internal date's UTC offset in seconds, kept for INTERNALDATE
	Size   int64
	BodyID uint64
	Flags  []string
}

// dedupRecord remembers a Deliver key. Created allows pruning old records.
type dedupRecord struct {
	UID     uint32
	Created int64 // Unix seconds
}

func (m *messageRecord) internalDate() time.Time {
	return time.Unix(0, m.Date).In(time.FixedZone("", int(m.Zone)))
}

func (m *messageRecord) setInternalDate(t time.Time) {
	_, off := t.Zone()
	m.Date, m.Zone = t.UnixNano(), int32(off)
}

type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) str(s string)     { e.b = appendString(e.b, s) }
func (e *encoder) boolean(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

// decoder reads what encoder wrote; the first failure sticks in err.
type decoder struct {
	b   []byte
	err error
}

func newDecoder(kind string, b []byte) *decoder {
	d := &decoder{b: b}
	if len(b) == 0 || b[0] != recordFormat {
		d.err = fmt.Errorf("%w: %s record has unknown format", ErrCorrupt, kind)
		return d
	}
	d.b = b[1:]
	return d
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated record", ErrCorrupt)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) boolean() bool {
	if len(d.b) == 0 {
		d.fail()
		return false
	}
	v := d.b[0] != 0
	d.b = d.b[1:]
	return v
}

func (r *accountRecord) encode() []byte {
	e := encoder{b: []byte{recordFormat}}
	e.uvarint(r.NextMailboxID)
	e.uvarint(r.NextBodyID)
	e.uvarint(uint64(r.LastUIDValidity))
	e.varint(r.Messages)
	e.varint(r.Bytes)
	return e.b
}

func (r *accountRecord) decode(b []byte) error {
	d := newDecoder("account", b)
	r.NextMailboxID = d.uvarint()
	r.NextBodyID = d.uvarint()
	r.LastUIDValidity = uint32(d.uvarint())
	r.Messages = d.varint()
	r.Bytes = d.varint()
	return d.err
}

func (r *mailboxRecord) encode() []byte {
	e := encoder{b: []byte{recordFormat}}
	e.str(r.Name)
	e.uvarint(uint64(r.UIDValidity))
	e.uvarint(uint64(r.UIDNext))
	e.uvarint(r.HighestModSeq)
	e.varint(r.Messages)
	e.varint(r.Unseen)
	e.varint(r.Bytes)
	e.str(r.SpecialUse)
	e.boolean(r.Subscribed)
	return e.b
}

func (r *mailboxRecord) decode(b []byte) error {
	d := newDecoder("mailbox", b)
	r.Name = d.str()
	r.UIDValidity = uint32(d.uvarint())
	r.UIDNext = uint32(d.uvarint())
	r.HighestModSeq = d.uvarint()
	r.Messages = d.varint()
	r.Unseen = d.varint()
	r.Bytes = d.varint()
	r.SpecialUse = d.str()
	r.Subscribed = d.boolean()
	return d.err
}

func (r *messageRecord) encode() []byte {
	e := encoder{b: make([]byte, 1, 32)}
	e.b[0] = recordFormat
	e.uvarint(r.ModSeq)
	e.varint(r.Date)
	e.varint(int64(r.Zone))
	e.varint(r.Size)
	e.uvarint(r.BodyID)
	e.uvarint(uint64(len(r.Flags)))
	for _, f := range r.Flags {
		e.str(f)
	}
	return e.b
}

func (r *messageRecord) decode(b []byte) error {
	d := newDecoder("message", b)
	r.ModSeq = d.uvarint()
	r.Date = d.varint()
	r.Zone = int32(d.varint())
	r.Size = d.varint()
	r.BodyID = d.uvarint()
	n := d.uvarint()
	if n > uint64(len(d.b)) { // each flag takes at least one byte
		d.fail()
	}
	r.Flags = nil
	if d.err == nil && n > 0 {
		r.Flags = make([]string, n)
		for i := range r.Flags {
			r.Flags[i] = d.str()
		}
	}
	return d.err
}

func (r *dedupRecord) encode() []byte {
	e := encoder{b: []byte{recordFormat}}
	e.uvarint(uint64(r.UID))
	e.varint(r.Created)
	return e.b
}

func (r *dedupRecord) decode(b []byte) error {
	d := newDecoder("dedup", b)
	r.UID = uint32(d.uvarint())
	r.Created = d.varint()
	return d.err
}
