package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"clustermail/api"
)

// newKeygenCmd returns "clustermail keygen": a fresh gossip key.
func newKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen",
		Short: "Print a new random gossip encryption key (32 bytes, base64)",
		Long: "Print a new random 32-byte key (AES-256) in base64, for --gossip-key on\n" +
			"every node or for \"clustermail keyring install\" when rotating.",
		Example: "  clustermail keygen",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			k := make([]byte, 32)
			if _, err := rand.Read(k); err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			_, err := fmt.Fprintln(cmdOut(cmd), base64.StdEncoding.EncodeToString(k))
			return err
		},
	}
}

// newKeyringCmd returns "clustermail keyring": the gossip keys of every node.
func newKeyringCmd() *cobra.Command {
	opts := &apiOptions{}
	cmd := newGroupCmd("keyring", "List and rotate the gossip encryption keys of every node", opts)
	cmd.Long = "List and rotate the gossip encryption keys. Each command acts on every live\n" +
		"node: the node at --api reaches the others over the cluster port and reports\n" +
		"each one's result. Each node keeps its keys in <data-dir>/gossip.keyring.\n\n" +
		"Rotate with: keygen, install NEW, use NEW, remove OLD. A node that was down\n" +
		"meanwhile is listed as not reached: once it runs again, repeat the commands;\n" +
		"if OLD is already removed everywhere, stop it, delete its gossip.keyring and\n" +
		"start it with --gossip-key NEW."
	change := func(op, short, long string) *cobra.Command {
		return &cobra.Command{
			Use:     op + " KEY",
			Short:   short,
			Long:    long,
			Example: "  clustermail keyring " + op + " \"$KEY\"",
			Args:    usageArgs(cobra.ExactArgs(1)),
			RunE: opts.runE(func(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
				res, err := c.KeyringChange(ctx, op, strings.TrimSpace(args[0]))
				if err != nil {
					return opError("keyring "+op, "", err)
				}
				return opts.printKeyring(cmd, "keyring "+op, res)
			}),
		}
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:     "list",
			Short:   "List the gossip keys of every node (primary first)",
			Example: "  clustermail keyring list\n  clustermail keyring list --json",
			Args:    usageArgs(cobra.NoArgs),
			RunE: opts.runE(func(ctx context.Context, c *api.Client, cmd *cobra.Command, _ []string) error {
				res, err := c.Keyring(ctx)
				if err != nil {
					return opError("keyring list", "", err)
				}
				return opts.printKeyring(cmd, "keyring list", res)
			}),
		},
		change("install", "Install KEY on every node (it decrypts with it; still sends with the primary)",
			"Install KEY on every node: gossip sealed with it is accepted from now on, but\n"+
				"each node still sends with its primary key. Install on all nodes before \"use\"."),
		change("use", "Make KEY, installed everywhere, the primary key every node sends with", ""),
		change("remove", "Remove KEY from every node (never the primary)",
			"Remove KEY from every node. The primary key cannot be removed: \"use\" another first."),
	)
	return cmd
}

// printKeyring prints each node's keys, and fails if any node failed, so a
// script stops before "use" when "install" did not reach every node.
func (o *apiOptions) printKeyring(cmd *cobra.Command, op string, res []api.KeyringNode) error {
	failed := 0
	for _, r := range res {
		if r.Error != "" {
			failed++
		}
	}
	if o.json {
		if err := printJSON(cmdOut(cmd), res); err != nil {
			return err
		}
	} else {
		t := newTable(cmdOut(cmd), "node", "primary", "keys", "error")
		for _, r := range res {
			t.row(r.Node, r.Primary, strconv.Itoa(len(r.Keys))+keyList(r), r.Error)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("%s: failed on %d of %d nodes", op, failed, len(res))
	}
	return nil
}

func keyList(r api.KeyringNode) string {
	if len(r.Keys) == 0 {
		return ""
	}
	return " (" + strings.Join(r.Keys, ", ") + ")"
}
