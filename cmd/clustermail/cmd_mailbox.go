package main

import (
	"context"
	"fmt"
	"strconv"

	"clustermail/api"

	"github.com/spf13/cobra"
)

// newMailboxCmd returns "clustermail mailbox": access to an account's
// INBOX for support and debugging, and export and import of its folders.
func newMailboxCmd() *cobra.Command {
	opts := &apiOptions{}
	cmd := newGroupCmd("mailbox", "Look into an account's mailboxes, export and import them", opts)
	cmd.AddCommand(
		&cobra.Command{
			Use:     "list ADDRESS",
			Aliases: []string{"ls"},
			Short:   "List the messages in an account's INBOX",
			Example: "  clustermail mailbox list alice@example.org",
			Args:    usageArgs(cobra.ExactArgs(1)),
			RunE:    opts.runE(opts.mailboxList),
		},
		&cobra.Command{
			Use:   "show ADDRESS UID",
			Short: "Write one message, exactly as stored, to stdout",
			Long: "Write one message of an account's INBOX to stdout, byte for byte as stored\n" +
				"(headers and body). --json does not apply.",
			Example: "  clustermail mailbox show alice@example.org 42 > message.eml",
			Args:    usageArgs(cobra.ExactArgs(2)),
			RunE:    opts.runE(opts.mailboxShow),
		},
		&cobra.Command{
			Use:     "stats ADDRESS",
			Short:   "Show an account's folders, message counts and bytes against its quota",
			Example: "  clustermail mailbox stats alice@example.org",
			Args:    usageArgs(cobra.ExactArgs(1)),
			RunE:    opts.runE(opts.mailboxStats),
		},
	)
	cmd.AddCommand(newMailboxIOCmds(opts)...)
	return cmd
}

func (o *apiOptions) mailboxList(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
	msgs, err := c.Messages(ctx, args[0])
	if err != nil {
		return opError("mailbox list", args[0], err)
	}
	if o.json {
		return printJSON(cmdOut(cmd), msgs)
	}
	if len(msgs) == 0 {
		_, err := fmt.Fprintf(cmdOut(cmd), "no messages for %s\n", args[0])
		return err
	}
	t := newTable(cmdOut(cmd), "uid", "date", "from", "subject", "size")
	for _, m := range msgs {
		// Sanitize before truncating so that control characters count
		// as the single space they become.
		t.row(strconv.FormatUint(uint64(m.UID), 10), formatTime(m.Date),
			truncate(sanitize(m.From), maxCell), truncate(sanitize(m.Subject), maxCell), formatSize(m.Size))
	}
	return t.flush()
}

func (o *apiOptions) mailboxShow(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
	address := args[0]
	uid, err := strconv.ParseUint(args[1], 10, 32)
	if err != nil || uid == 0 {
		// IMAP UIDs are non-zero 32-bit numbers.
		return fmt.Errorf("mailbox show: %s: invalid UID %q: want a positive whole number", address, args[1])
	}
	raw, err := c.RawMessage(ctx, address, uint32(uid))
	if err != nil {
		return opError("mailbox show", fmt.Sprintf("%s UID %d", address, uid), err)
	}
	if _, err := cmdOut(cmd).Write(raw); err != nil {
		return fmt.Errorf("mailbox show: write message: %w", err)
	}
	return nil
}

func (o *apiOptions) mailboxStats(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
	st, err := c.MailboxStats(ctx, args[0])
	if err != nil {
		return opError("mailbox stats", args[0], err)
	}
	if o.json {
		return printJSON(cmdOut(cmd), st)
	}
	w := cmdOut(cmd)
	used := formatSize(st.Bytes)
	if st.Quota > 0 {
		used += fmt.Sprintf(" of %s (%.0f%%)", formatSize(st.Quota), 100*float64(st.Bytes)/float64(st.Quota))
	} else {
		used += " (no quota)"
	}
	if err := printKV(w, []kv{{"account", st.Address}, {"owner node", st.Node},
		{"messages", strconv.Itoa(st.Messages)}, {"used", used}}); err != nil {
		return err
	}
	fmt.Fprintln(w)
	t := newTable(w, "folder", "special use", "messages", "unseen", "size")
	for _, f := range st.Folders {
		t.row(f.Name, f.SpecialUse, strconv.Itoa(f.Messages), strconv.Itoa(f.Unseen), formatSize(f.Bytes))
	}
	return t.flush()
}
