package peer

import (
	"context"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// RaftLayer is the raft.StreamLayer over the cluster port. Net is the
// Network dials go through; nil is plaintext.
type RaftLayer struct {
	net.Listener
	Net *Network
}

var _ raft.StreamLayer = RaftLayer{}

// RaftLayer returns the stream layer of this listener's Raft connections,
// dialing through the same Network.
func (l *Listener) RaftLayer() RaftLayer { return RaftLayer{Listener: l.Raft(), Net: l.net} }

// Dial opens a Raft connection to another node.
func (r RaftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return r.Net.Dial(ctx, string(address), KindRaft)
}
