package cluster

import (
	"encoding/json"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// Meta is what a node gossips about itself. It must stay under memberlist's
// 512-byte limit, hence the short keys.
type Meta struct {
	ID       string `json:"i"`
	RaftAddr string `json:"r"`
	APIAddr  string `json:"a"`
	SMTPAddr string `json:"s"`
	Expect   int    `json:"e,omitempty"`
	Version  string `json:"v"`
	// Leaving is gossiped just before a graceful leave: memberlist reports a
	// leave and a death the same way, so the departing node says which.
	Leaving bool `json:"l,omitempty"`
	// Features is the level of the Raft log format the node applies. A
	// proposer uses a newer format only when every node it knows of has
	// announced it, so that an older node never stops on an entry it
	// cannot read during a rolling upgrade.
	Features int `json:"f,omitempty"`
}

// features is this version's level: 1 = multi entries (raftstore.EncodeMulti).
const (
	featureMulti = 1
	features     = featureMulti
)

func (m Meta) encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("node metadata is %d bytes, more than memberlist's %d", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

func decodeMeta(b []byte) (Meta, bool) {
	var m Meta
	if len(b) == 0 || json.Unmarshal(b, &m) != nil || m.ID == "" {
		return Meta{}, false
	}
	return m, true
}
