package raftstore

import (
	"runtime"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// FuzzFSMDispatch feeds arbitrary entries to the state machine's framing:
// the type byte, the request-id flag and id, unknown types with and
// without IgnoreUnknown. Each entry is applied, refused with a business
// error, or stops the node on purpose with a "raftstore:" panic (an
// unknown type, a truncated id, an undecodable payload); a runtime panic
// is a bug.
func FuzzFSMDispatch(f *testing.F) {
	fsm, err := OpenFSM("state", FSMOptions{FS: vfs.NewMem()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { fsm.Close() })
	fsm.Register(cmdPut, func(tx *Tx, p []byte) error {
		var x kv
		Decode(p, &x)
		if x.K == "" {
			return Errorf(CodeInvalid, "empty key")
		}
		return tx.Set([]byte{0x3f, x.K[0]}, []byte(x.V))
	})
	for _, v := range []kv{{"a", "1"}, {"", "x"}} {
		b, err := Encode(cmdPut, v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{byte(cmdPut), '{', '}'})
	f.Add([]byte{byte(cmdPut | withRequestID), 1, 2, 3})
	f.Add([]byte{byte(IgnoreUnknown | 5)})
	f.Add([]byte{})
	one, _ := Encode(cmdPut, kv{"m", "1"})
	f.Add(EncodeMulti([][]byte{one, {byte(cmdPut), '{', '}'}}))
	f.Add([]byte{byte(cmdMulti), 3, 1, '{', '}'})
	var index uint64
	f.Fuzz(func(t *testing.T, data []byte) {
		index++
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if _, ok := v.(runtime.Error); ok {
				t.Fatalf("entry %q: runtime panic %v", data, v)
			}
			if s, ok := v.(string); !ok || !strings.HasPrefix(s, "raftstore: ") {
				t.Fatalf("entry %q: unexpected panic %v", data, v)
			}
		}()
		fsm.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
	})
}
