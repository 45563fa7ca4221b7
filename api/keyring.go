package api

import "context"

// KeyringNode is one node's gossip keys, or why it could not be reached.
type KeyringNode struct {
	Node    string   `json:"node"`
	Primary string   `json:"primary,omitempty"`
	Keys    []string `json:"keys,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// KeyringRequest changes the gossip keyring of every node: op is install,
// use or remove; key is base64.
type KeyringRequest struct {
	Op  string `json:"op"`
	Key string `json:"key"`
}

// Keyring lists the gossip keys of every live node.
func (c *Client) Keyring(ctx context.Context) ([]KeyringNode, error) {
	var out []KeyringNode
	return out, c.do(ctx, "GET", "/v1/keyring", nil, &out)
}

// KeyringChange installs, uses or removes a gossip key on every live node
// and returns each node's keys afterwards (or its error).
func (c *Client) KeyringChange(ctx context.Context, op, key string) ([]KeyringNode, error) {
	var out []KeyringNode
	return out, c.do(ctx, "POST", "/v1/keyring", KeyringRequest{Op: op, Key: key}, &out)
}
