package peer

import (
	"context"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// RaftLayer is the raft.StreamLayer over the cluster port.
type RaftLayer struct {
	net.Listener
}

var _ raft.StreamLayer = RaftLayer{}

// Dial opens a Raft connection to another node.
func (r RaftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return Dial(ctx, string(address), KindRaft)
}
