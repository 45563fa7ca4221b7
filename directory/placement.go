package directory

import (
	"crypto/sha256"
	"encoding/binary"
)

// Place chooses the owner node of a new mailbox by rendezvous (highest
// random weight) hashing: each address picks the node with the highest
// hash of (node, address). Adding a node moves only the accounts it wins,
// and every proposer computes the same answer for the same live set.
func Place(address string, nodes []string) string {
	var best string
	var bestScore uint64
	for _, n := range nodes {
		h := sha256.Sum256([]byte(n + "\x00" + Normalize(address)))
		s := binary.BigEndian.Uint64(h[:8])
		if best == "" || s > bestScore || (s == bestScore && n < best) {
			best, bestScore = n, s
		}
	}
	return best
}
