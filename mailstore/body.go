package mailstore

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// bodyChunkSize bounds a single Pebble value. Larger bodies are split so no
// value dominates a memtable or an sstable block.
const bodyChunkSize = 1 << 20

// putBody writes body under a fresh body id and returns it. The caller takes
// the first reference by adding a message that points at it.
func (t *tx) putBody(body []byte) (uint64, error) {
	id := t.acct.NextBodyID
	t.acct.NextBodyID++
	for i := 0; i*bodyChunkSize < len(body); i++ {
		chunk := body[i*bodyChunkSize : min((i+1)*bodyChunkSize, len(body))]
		if err := t.set(bodyChunkKey(t.account, id, uint32(i)), chunk); err != nil {
			return 0, fmt.Errorf("write body: %w", err)
		}
	}
	return id, nil
}

// readBody returns the size bytes stored under body id.
func readBody(r reader, account string, id uint64, size int64) ([]byte, error) {
	out := make([]byte, 0, size)
	if size == 0 {
		return out, nil
	}
	if size <= bodyChunkSize {
		err := get(r, bodyChunkKey(account, id, 0), func(b []byte) error {
			out = append(out, b...)
			return nil
		})
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, fmt.Errorf("%w: body %d missing", ErrCorrupt, id)
		}
		if err != nil {
			return nil, fmt.Errorf("read body: %w", err)
		}
	} else {
		p := bodyPrefix(account, id)
		it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return nil, fmt.Errorf("read body: %w", err)
		}
		for it.First(); it.Valid(); it.Next() {
			out = append(out, it.Value()...)
		}
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return nil, fmt.Errorf("read body: %w", err)
		}
	}
	if int64(len(out)) != size {
		return nil, fmt.Errorf("%w: body %d has %d bytes, want %d", ErrCorrupt, id, len(out), size)
	}
	return out, nil
}
