package node

import (
	"fmt"
	"sync"

	"clustermail/cluster"
	"clustermail/directory"
	"clustermail/mailrpc"
	"clustermail/mailstore"
)

// mailAccess finds an account's mailboxes for the IMAP and POP3 servers of
// this node: the local store when this node owns the account, else a client
// of the owner's store over the cluster port. That is how every node serves
// every user (promise 4).
type mailAccess struct {
	self    string
	local   *mailstore.Store
	dir     *directory.Directory
	cluster *cluster.Cluster
	n       *Node

	mu      sync.Mutex
	clients map[string]*mailrpc.Client // by cluster address
}

// errOwnerDown wraps mailrpc.ErrUnavailable so both protocols answer with
// their "temporary" code.
func errOwnerDown(account, node string) error {
	return fmt.Errorf("the mailbox of %s is on node %s, which is down: %w", account, node, mailrpc.ErrUnavailable)
}

// open returns the store of account.
func (a *mailAccess) open(account string) (mailrpc.Store, error) {
	acc, ok, err := a.dir.Account(account)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("account %s does not exist", account)
	}
	if acc.Node == a.self {
		return a.local, nil
	}
	m, ok := a.cluster.Node(acc.Node)
	if !ok || m.State != cluster.StateAlive {
		return nil, errOwnerDown(acc.Address, acc.Node)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.clients[m.Meta.RaftAddr]
	if !ok {
		c = mailrpc.NewClient(a.n.rpc, m.Meta.RaftAddr)
		a.clients[m.Meta.RaftAddr] = c
	}
	return c, nil
}

// authenticate checks a login against the directory.
func (a *mailAccess) authenticate(user, pass string) (string, bool) {
	acc, ok := a.dir.Authenticate(user, pass)
	return acc.Address, ok
}

func (a *mailAccess) quota(account string) (int64, error) {
	acc, ok, err := a.dir.Account(account)
	if err != nil || !ok {
		return 0, err
	}
	return acc.Quota, nil
}
