// Package api holds the admin HTTP API's JSON types and a client for it.
// The operator commands, the dev command and the tests all speak to a node
// through this package, so the wire format is defined in one place.
package api

import "time"

// Member is one node as seen by gossip and Raft together.
type Member struct {
	Name        string `json:"name"`
	ID          string `json:"id"`
	GossipAddr  string `json:"gossip_addr"`
	RaftAddr    string `json:"raft_addr"`
	APIAddr     string `json:"api_addr"`
	SMTPAddr    string `json:"smtp_addr"`
	GossipState string `json:"gossip_state"` // alive, suspect, dead, left, unknown
	RaftRole    string `json:"raft_role"`    // leader, follower, none
	Suffrage    string `json:"suffrage"`     // voter, nonvoter, none
	Version     string `json:"version"`
}

// Status is the Raft state of the node that answered.
type Status struct {
	Node         string   `json:"node"`
	State        string   `json:"state"` // Leader, Follower, Candidate, Shutdown
	Leader       string   `json:"leader"`
	LeaderAddr   string   `json:"leader_addr"`
	Term         uint64   `json:"term"`
	CommitIndex  uint64   `json:"commit_index"`
	AppliedIndex uint64   `json:"applied_index"`
	LastLogIndex uint64   `json:"last_log_index"`
	Voters       []string `json:"voters"`
	NonVoters    []string `json:"non_voters"`
}

// Domain is a hosted mail domain.
type Domain struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// User is an account; the password hash never leaves the node.
type User struct {
	Address string    `json:"address"`
	Node    string    `json:"node"`  // owner node of the mailbox
	Quota   int64     `json:"quota"` // bytes, 0 = unlimited
	Created time.Time `json:"created"`
}

// UserAddRequest creates an account. Node empty means "place it".
type UserAddRequest struct {
	Address  string `json:"address"`
	Password string `json:"password"`
	Node     string `json:"node,omitempty"`
	Quota    int64  `json:"quota,omitempty"`
}

// PasswordRequest sets an account's password.
type PasswordRequest struct {
	Password string `json:"password"`
}

// Alias forwards an address to one or more addresses.
type Alias struct {
	Alias   string   `json:"alias"`
	Targets []string `json:"targets"`
}

// MessageSummary is one message of a mailbox listing.
type MessageSummary struct {
	UID     uint32    `json:"uid"`
	Date    time.Time `json:"date"` // internal date: when it was delivered
	From    string    `json:"from"`
	Subject string    `json:"subject"`
	Size    int64     `json:"size"`
	Flags   []string  `json:"flags,omitempty"`
}

// NameRequest names a node (remove-peer, transfer-leader).
type NameRequest struct {
	Name string `json:"name"`
}

// ErrorBody is what every non-2xx answer carries.
type ErrorBody struct {
	Error string `json:"error"`
}

// QueueSummary is one line of the queue listing.
type QueueSummary struct {
	ID          string    `json:"id"`
	From        string    `json:"from"`
	Created     time.Time `json:"created"`
	Size        int64     `json:"size"`
	Pending     int       `json:"pending"`
	Recipients  int       `json:"recipients"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Nodes       []string  `json:"nodes"` // nodes working on its pending recipients
}

// QueueEntry is a queued message with every recipient's state.
type QueueEntry struct {
	ID            string           `json:"id"`
	From          string           `json:"from"`
	Created       time.Time        `json:"created"`
	Size          int64            `json:"size"`
	Node          string           `json:"node"`
	Holders       []string         `json:"holders"`
	DelayNotified bool             `json:"delay_notified"`
	Recipients    []QueueRecipient `json:"recipients"`
}

// QueueRecipient is one recipient of a queued message.
type QueueRecipient struct {
	Addr        string    `json:"addr"`
	Orig        string    `json:"orig,omitempty"`
	Node        string    `json:"node"`
	Remote      bool      `json:"remote"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	LastReply   string    `json:"last_reply,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
}

// RetryRequest asks for an immediate attempt of some entries, or all.
type RetryRequest struct {
	IDs []string `json:"ids,omitempty"`
	All bool     `json:"all,omitempty"`
}

// MailboxStats is an account's folders and usage against its quota.
type MailboxStats struct {
	Address  string        `json:"address"`
	Node     string        `json:"node"`
	Quota    int64         `json:"quota"` // bytes, 0 = unlimited
	Messages int           `json:"messages"`
	Bytes    int64         `json:"bytes"`
	Folders  []FolderStats `json:"folders"`
}

// FolderStats is one folder of an account.
type FolderStats struct {
	Name       string `json:"name"`
	SpecialUse string `json:"special_use,omitempty"`
	Messages   int    `json:"messages"`
	Unseen     int    `json:"unseen"`
	Bytes      int64  `json:"bytes"`
}
