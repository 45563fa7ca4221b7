// Package backup holds the file formats of clustermail's backups:
//
//   - the snapshot file of "cluster snapshot save" and "restore": a Raft
//     snapshot of the replicated state (directory and queue) with a header
//     and a SHA-256 checksum (snapshot.go);
//   - mbox, in its mboxrd variant, for "mailbox export" and "import", with
//     message flags in the Status, X-Status and X-Keywords headers that
//     mutt and Dovecot use (mbox.go);
//   - Maildir directories, read for "mailbox import" (maildir.go).
//
// The server and the operator commands both use this package, so a file
// written by one side is read by the other with the same code.
package backup
