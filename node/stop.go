package node

import (
	"context"
	"os"
	"time"

	"clustermail/smtpd"
)

// Stop shuts the node down without leaving the cluster: the others see it
// fail and it stays a voter, as after a crash or for a restart.
func (n *Node) Stop() { n.stop(false) }

// Leave departs the cluster gracefully (removed from the Raft
// configuration), then shuts down.
func (n *Node) Leave() { n.stop(true) }

// ReloadTLS reloads the certificate files (the SIGHUP handler calls it).
func (n *Node) ReloadTLS() {
	for _, ch := range []chan os.Signal{n.hup, n.clusterHup} {
		select {
		case ch <- nil:
		default:
		}
	}
}

// Done is closed once the node has stopped.
func (n *Node) Done() <-chan struct{} { return n.stopped }

// LeaveRequested is signalled when an operator asked this node to leave
// through the API; the process owner then calls Leave.
func (n *Node) LeaveRequested() <-chan struct{} { return n.leaveReq }

func (n *Node) stop(leave bool) {
	n.stopOnce.Do(func() {
		defer close(n.stopped)
		n.log.Info("node stopping", "leave", leave)
		// Stop taking mail first; sessions in DATA get time to finish
		// (their messages are either queued or refused with a 4xx).
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		n.stopListeners(ctx)
		n.abort2(leave)
		n.log.Info("node stopped")
	})
}

// stopListeners shuts the mail listeners down (SMTP, submission, IMAP,
// POP3), giving their sessions until ctx ends.
func (n *Node) stopListeners(ctx context.Context) {
	for _, s := range append([]*smtpd.Server{n.smtp}, n.subs...) {
		if s != nil {
			_ = s.Shutdown(ctx)
		}
	}
	for _, s := range n.readers {
		_ = s.Shutdown(ctx)
	}
}

// abort stops whatever Start got running, without leaving. The mail
// listeners started before the failing step must be shut down too, or
// abort2 would wait for their Serve forever.
func (n *Node) abort() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.stopListeners(ctx)
	n.abort2(false)
}

func (n *Node) abort2(leave bool) {
	if n.cancel != nil {
		n.cancel()
	}
	if n.cluster != nil {
		var err error
		if leave {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err = n.cluster.Leave(ctx)
			cancel()
		} else {
			err = n.cluster.Shutdown()
		}
		if err != nil {
			n.log.Warn("cluster shutdown", "err", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n.apiSrv != nil {
		_ = n.apiSrv.Shutdown(ctx)
	} else if n.apiLn != nil {
		n.apiLn.Close()
	}
	if n.rpcSrv != nil {
		_ = n.rpcSrv.Shutdown(ctx)
	}
	if n.peerLn != nil {
		n.peerLn.Close()
	}
	n.wg.Wait()
	n.closeStores()
}
