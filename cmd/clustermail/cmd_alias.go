package main

import (
	"context"
	"fmt"
	"strings"

	"clustermail/api"

	"github.com/spf13/cobra"
)

// newAliasCmd returns "clustermail alias": forwarding addresses.
func newAliasCmd() *cobra.Command {
	opts := &apiOptions{}
	cmd := newGroupCmd("alias", "Manage aliases that forward an address to others", opts)
	cmd.AddCommand(
		&cobra.Command{
			Use:   "add ALIAS TARGET...",
			Short: "Create or replace an alias",
			Long: "Create an alias forwarding ALIAS to one or more targets, replacing the\n" +
				"targets if the alias exists. Targets may also be given comma-separated,\n" +
				"as \"alias list\" prints them.",
			Example: "  clustermail alias add postmaster@example.org alice@example.org\n" +
				"  clustermail alias add team@example.org alice@example.org bob@example.org",
			Args: usageArgs(cobra.MinimumNArgs(2)),
			RunE: opts.runE(opts.aliasAdd),
		},
		&cobra.Command{
			Use:     "list",
			Aliases: []string{"ls"},
			Short:   "List aliases and their targets",
			Example: "  clustermail alias list\n  clustermail alias list --json",
			Args:    usageArgs(cobra.NoArgs),
			RunE:    opts.runE(opts.aliasList),
		},
		&cobra.Command{
			Use:     "remove ALIAS",
			Aliases: []string{"rm"},
			Short:   "Delete an alias",
			Example: "  clustermail alias remove team@example.org",
			Args:    usageArgs(cobra.ExactArgs(1)),
			RunE:    opts.runE(opts.aliasRemove),
		},
	)
	return cmd
}

// splitTargets flattens target arguments, splitting comma-separated ones,
// so that the output of "alias list" can be pasted back.
func splitTargets(args []string) []string {
	var targets []string
	for _, a := range args {
		for _, t := range strings.Split(a, ",") {
			if t = strings.TrimSpace(t); t != "" {
				targets = append(targets, t)
			}
		}
	}
	return targets
}

func (o *apiOptions) aliasAdd(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
	alias := args[0]
	targets := splitTargets(args[1:])
	if len(targets) == 0 {
		return fmt.Errorf("alias add: %s: no target address given\nusage: %s", alias, cmd.UseLine())
	}
	a, err := c.AddAlias(ctx, alias, targets)
	if err != nil {
		return opError("alias add", alias, err)
	}
	if o.json {
		return printJSON(cmdOut(cmd), a)
	}
	_, err = fmt.Fprintf(cmdOut(cmd), "alias %s -> %s\n", a.Alias, joinOr(a.Targets, "-"))
	return err
}

func (o *apiOptions) aliasList(ctx context.Context, c *api.Client, cmd *cobra.Command, _ []string) error {
	aliases, err := c.Aliases(ctx)
	if err != nil {
		return opError("alias list", "", err)
	}
	if o.json {
		return printJSON(cmdOut(cmd), aliases)
	}
	if len(aliases) == 0 {
		_, err := fmt.Fprintln(cmdOut(cmd), "no aliases")
		return err
	}
	t := newTable(cmdOut(cmd), "alias", "targets")
	for _, a := range aliases {
		t.row(a.Alias, strings.Join(a.Targets, ", "))
	}
	return t.flush()
}

func (o *apiOptions) aliasRemove(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
	if err := c.RemoveAlias(ctx, args[0]); err != nil {
		return opError("alias remove", args[0], err)
	}
	if o.json {
		return nil
	}
	_, err := fmt.Fprintf(cmdOut(cmd), "removed alias %s\n", args[0])
	return err
}
