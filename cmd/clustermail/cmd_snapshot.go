package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"clustermail/api"
	"clustermail/backup"

	"github.com/spf13/cobra"
)

// snapshotScope says what a snapshot holds and what it does not, in every
// place an operator decides something based on it.
const snapshotScope = "A snapshot holds the replicated state: domains, accounts (with their password\n" +
	"hashes and owner nodes), aliases and the delivery queue's entries. It does\n" +
	"NOT hold message bodies: neither those waiting in the queue nor the\n" +
	"mailboxes, which live on each node's own disk. Back mailboxes up with\n" +
	"\"clustermail mailbox export\"."

// restoreWait is how long a restore may take once the file is uploaded:
// the leader's restore timeout and some slack.
const restoreWait = 6 * time.Minute

// newSnapshotCmd returns "clustermail cluster snapshot", registered under
// the cluster group (whose flags it shares).
func newSnapshotCmd(opts *apiOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save the replicated state to a file, or restore it",
		Long:  "Save the replicated state to a file, or restore it.\n\n" + snapshotScope,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q; run '%s --help' for the list", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var saveProg, restoreProg progressOptions
	var yes bool
	save := &cobra.Command{
		Use:   "save FILE",
		Short: "Save a snapshot of the directory and the queue to FILE (- for stdout)",
		Long: "Save a snapshot of the directory and the queue, taken on the Raft leader, to\n" +
			"FILE. The file is checked (SHA-256) as it arrives and only then put in place;\n" +
			"it is readable by its owner only, since it holds password hashes.\n\n" + snapshotScope + streamHelp,
		Example: "  clustermail cluster snapshot save /backup/clustermail-$(date +%F).snapshot\n" +
			"  clustermail cluster snapshot save - | gzip > state.snapshot.gz",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: opts.streamE(func(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string, wd *watchdog) error {
			return opts.snapshotSave(ctx, c, cmd, args[0], wd, &saveProg)
		}),
	}
	saveProg.register(save)
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the directory and the queue of the whole cluster with a snapshot",
		Long: "Replace the directory and the queue of the whole cluster with the snapshot in\n" +
			"FILE (- for stdin, with --yes). This is for disaster recovery: domains,\n" +
			"accounts, aliases and queue entries changed since the snapshot was taken are\n" +
			"lost, on every node. The file is checked before anything changes; the\n" +
			"command asks for confirmation unless --yes is given.\n\n" + snapshotScope + "\n\n" +
			"After a restore, accounts created since the snapshot are gone but their\n" +
			"mailboxes stay on disk; messages queued since then are no longer in the\n" +
			"queue, and queued messages of the snapshot whose bodies were delivered or\n" +
			"dropped since cannot be delivered again." + streamHelp,
		Example: "  clustermail cluster snapshot restore /backup/clustermail-2026-11-29.snapshot",
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: opts.streamE(func(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string, wd *watchdog) error {
			return opts.snapshotRestore(ctx, c, cmd, args[0], yes, wd, &restoreProg)
		}),
	}
	restore.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	restoreProg.register(restore)
	cmd.AddCommand(save, restore)
	return cmd
}

func (o *apiOptions) snapshotSave(ctx context.Context, c *api.Client, cmd *cobra.Command, path string, wd *watchdog, po *progressOptions) error {
	var info api.SnapshotInfo
	err := writeOutput(cmd, "snapshot save", path, func(out io.Writer) error {
		m := &meter{wd: wd, prog: po.newProgress(cmd, "snapshot")}
		var err error
		info, err = c.SaveSnapshot(ctx, m.writer(out))
		m.done()
		if err != nil {
			return opError("snapshot save", path, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	report := cmdOut(cmd)
	if path == "-" {
		report = cmd.ErrOrStderr()
	}
	if o.json {
		return printJSON(report, info)
	}
	_, err = fmt.Fprintf(report, "saved the snapshot of raft index %d (term %d, %s of state, taken on leader %s) to %s\n"+
		"message bodies (queued, and in mailboxes) are not in it: back mailboxes up with \"mailbox export\"\n",
		info.Index, info.Term, formatSize(info.Size), info.Node, path)
	return err
}

func (o *apiOptions) snapshotRestore(ctx context.Context, c *api.Client, cmd *cobra.Command, path string, yes bool, wd *watchdog, po *progressOptions) error {
	var in io.Reader
	size := int64(-1)
	var h *backup.SnapshotHeader
	if path == "-" {
		if !yes {
			return errors.New("snapshot restore: reading the snapshot from stdin needs --yes, since stdin cannot also answer the confirmation")
		}
		in = cmd.InOrStdin()
	} else {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("snapshot restore: %w", err)
		}
		defer f.Close()
		// Check the file here first: a damaged backup is better found
		// before the question than by the leader after the upload.
		hdr, err := backup.VerifySnapshot(bufio.NewReaderSize(f, 1<<20))
		if err != nil {
			return fmt.Errorf("snapshot restore: %s: %w", path, err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("snapshot restore: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("snapshot restore: %w", err)
		}
		in, size, h = f, fi.Size(), &hdr
	}
	if !yes {
		ok, err := o.confirmRestore(ctx, c, cmd, path, *h, wd)
		if err != nil || !ok {
			return err
		}
	}
	m := &meter{wd: wd, prog: po.newProgress(cmd, "upload")}
	if size > 0 {
		m.prog.totalBytes = size
	}
	// Once uploaded, the leader restores and the followers install the
	// state: nothing moves for a while.
	m.eof = func() { wd.wait(restoreWait) }
	info, err := c.RestoreSnapshot(ctx, m.reader(in), size)
	m.done()
	if err != nil {
		return opError("snapshot restore", path, err)
	}
	if o.json {
		return printJSON(cmdOut(cmd), info)
	}
	_, err = fmt.Fprintf(cmdOut(cmd), "restored the snapshot of raft index %d (term %d, %s of state, taken %s on %s)\n"+
		"leader %s replaced the directory and the queue on every node; the log goes on from index %d\n",
		info.Index, info.Term, formatSize(info.Size), formatTime(info.Created), orDash(info.Node), info.RestoredBy, info.LogIndex)
	return err
}

// confirmRestore describes what the restore replaces and asks for "yes".
func (o *apiOptions) confirmRestore(ctx context.Context, c *api.Client, cmd *cobra.Command, path string, h backup.SnapshotHeader, wd *watchdog) (bool, error) {
	qctx, cancel := wd.quick(ctx)
	defer cancel()
	st, err := c.Status(qctx)
	if err != nil {
		return false, opError("snapshot restore", path, err)
	}
	w := cmd.ErrOrStderr()
	fmt.Fprintf(w, "This replaces the directory and the queue of the WHOLE cluster (leader %s, now at\n"+
		"raft index %d) with the snapshot in %s:\n"+
		"  raft index %d, term %d, %s of state, taken %s on %s.\n"+
		"Domains, accounts, aliases and queue entries changed since then are lost on every\n"+
		"node. Message bodies and mailboxes are not in the snapshot and stay as they are.\n"+
		"Type \"yes\" to restore: ", leaderString(st), st.CommitIndex, path, h.Index, h.Term, formatSize(h.Size),
		formatTime(h.Created), orDash(h.Node))
	wd.pause()
	line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	wd.kick()
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("snapshot restore: read the answer: %w", err)
	}
	if strings.TrimSpace(line) != "yes" {
		fmt.Fprintln(w, "not restored")
		return false, errors.New("snapshot restore: not confirmed")
	}
	return true, nil
}
