package raftstore

import (
	"encoding/binary"
	"fmt"
)

// cmdMulti frames several commands in one log entry. A node groups the
// commands it proposes at the same moment (a burst of accepted messages,
// a burst of delivery reports) into one entry: one forward to the leader,
// one log record on every node, one request to wait for, instead of one
// each. The commands inside keep their own request ids and outcomes; the
// entry itself has neither.
const cmdMulti CommandType = 63

// EncodeMulti frames commands built by Encode into one entry: the type
// byte, then each command as a uvarint length and its bytes.
func EncodeMulti(cmds [][]byte) []byte {
	n := 1
	for _, c := range cmds {
		n += binary.MaxVarintLen32 + len(c)
	}
	out := make([]byte, 1, n)
	out[0] = byte(cmdMulti)
	for _, c := range cmds {
		out = binary.AppendUvarint(out, uint64(len(c)))
		out = append(out, c...)
	}
	return out
}

// MultiResponse is the outcome of a multi entry: for each command, in
// order, nil or its error.
type MultiResponse []error

// splitMulti undoes EncodeMulti. A malformed frame was written by a buggy
// proposer: stop rather than diverge.
func splitMulti(p []byte, index uint64) [][]byte {
	var out [][]byte
	for len(p) > 0 {
		n, k := binary.Uvarint(p)
		if k <= 0 || n == 0 || n > uint64(len(p)-k) {
			panic(fmt.Sprintf("raftstore: malformed multi entry at index %d", index))
		}
		c := p[k : k+int(n)]
		if CommandType(c[0])&^withRequestID == cmdMulti {
			panic(fmt.Sprintf("raftstore: nested multi entry at index %d", index))
		}
		out = append(out, c)
		p = p[k+int(n):]
	}
	if len(out) == 0 {
		panic(fmt.Sprintf("raftstore: empty multi entry at index %d", index))
	}
	return out
}

// applyMulti applies each command of a multi entry in order, in the same
// transaction: a later command sees what an earlier one wrote.
func (f *FSM) applyMulti(tx *Tx, payload []byte, index uint64) MultiResponse {
	cmds := splitMulti(payload, index)
	out := make(MultiResponse, len(cmds))
	for i, c := range cmds {
		if err, ok := f.dispatchData(tx, c, index).(error); ok {
			out[i] = err
		}
	}
	return out
}
