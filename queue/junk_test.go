package queue

import (
	"encoding/json"
	"strings"
	"testing"
)

// The Junk mark is new: entries without it (written by older nodes) read
// as INBOX deliveries, and entries with it stay readable by older nodes,
// which ignore the field.
func TestRecipientJunkIsOptional(t *testing.T) {
	b, err := json.Marshal(Recipient{Addr: "a@x.test", Node: "n1", State: StatePending})
	if err != nil || strings.Contains(string(b), "junk") {
		t.Fatalf("unmarked recipient encodes as %s, %v", b, err)
	}
	var rc Recipient
	if err := json.Unmarshal([]byte(`{"addr":"a@x.test","node":"n1","state":"pending"}`), &rc); err != nil || rc.Junk {
		t.Fatalf("old entry: %+v, %v", rc, err)
	}
	b, _ = json.Marshal(Recipient{Addr: "a@x.test", Junk: true})
	if err := json.Unmarshal(b, &rc); err != nil || !rc.Junk {
		t.Fatalf("round trip of %s: %+v, %v", b, rc, err)
	}
}
