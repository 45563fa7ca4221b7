package main

import (
	"context"
	"fmt"

	"clustermail/api"

	"github.com/spf13/cobra"
)

// newDomainCmd returns "clustermail domain": the hosted mail domains.
func newDomainCmd() *cobra.Command {
	opts := &apiOptions{}
	cmd := newGroupCmd("domain", "Manage the hosted mail domains", opts)
	cmd.AddCommand(
		&cobra.Command{
			Use:     "add DOMAIN",
			Short:   "Start hosting a mail domain",
			Example: "  clustermail domain add example.org",
			Args:    usageArgs(cobra.ExactArgs(1)),
			RunE:    opts.runE(opts.domainAdd),
		},
		&cobra.Command{
			Use:     "list",
			Aliases: []string{"ls"},
			Short:   "List the hosted mail domains",
			Example: "  clustermail domain list\n  clustermail domain list --json",
			Args:    usageArgs(cobra.NoArgs),
			RunE:    opts.runE(opts.domainList),
		},
		&cobra.Command{
			Use:     "remove DOMAIN",
			Aliases: []string{"rm"},
			Short:   "Stop hosting a mail domain (it must have no users or aliases left)",
			Example: "  clustermail domain remove example.org",
			Args:    usageArgs(cobra.ExactArgs(1)),
			RunE:    opts.runE(opts.domainRemove),
		},
	)
	return cmd
}

func (o *apiOptions) domainAdd(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
	d, err := c.AddDomain(ctx, args[0])
	if err != nil {
		return opError("domain add", args[0], err)
	}
	if o.json {
		return printJSON(cmdOut(cmd), d)
	}
	_, err = fmt.Fprintf(cmdOut(cmd), "added domain %s\n", d.Name)
	return err
}

func (o *apiOptions) domainList(ctx context.Context, c *api.Client, cmd *cobra.Command, _ []string) error {
	domains, err := c.Domains(ctx)
	if err != nil {
		return opError("domain list", "", err)
	}
	if o.json {
		return printJSON(cmdOut(cmd), domains)
	}
	if len(domains) == 0 {
		_, err := fmt.Fprintln(cmdOut(cmd), "no domains")
		return err
	}
	t := newTable(cmdOut(cmd), "domain", "created")
	for _, d := range domains {
		t.row(d.Name, formatTime(d.Created))
	}
	return t.flush()
}

func (o *apiOptions) domainRemove(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
	if err := c.RemoveDomain(ctx, args[0]); err != nil {
		return opError("domain remove", args[0], err)
	}
	if o.json {
		return nil
	}
	_, err := fmt.Fprintf(cmdOut(cmd), "removed domain %s\n", args[0])
	return err
}
