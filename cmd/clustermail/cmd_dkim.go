package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"clustermail/api"
	"clustermail/signing"

	"github.com/spf13/cobra"
)

// newDKIMCmd returns "clustermail dkim": the DKIM keys outgoing mail is
// signed with.
func newDKIMCmd() *cobra.Command {
	opts := &apiOptions{}
	cmd := newGroupCmd("dkim", "Manage the DKIM keys that sign outgoing mail", opts)
	var gen api.DKIMGenerateRequest
	generate := &cobra.Command{
		Use:   "generate DOMAIN",
		Short: "Create a DKIM key for a hosted domain and print the DNS record to publish",
		Long: "Create a DKIM key for a hosted domain and print the TXT record to publish, in zone-file form.\n" +
			"RSA (2048 bits) is the default: every receiver verifies it. Ed25519 keys are small, but some\n" +
			"receivers only verify RSA: add one next to an RSA key, not instead of it. Of each algorithm,\n" +
			"the oldest key of the domain signs; a new key takes over when the old one is removed.",
		Example: "  clustermail dkim generate example.org\n" +
			"  clustermail dkim generate example.org --algorithm ed25519 --selector ed2026",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: opts.runE(func(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
			gen.Domain = args[0]
			return opts.dkimGenerate(ctx, c, cmd, gen)
		}),
	}
	generate.Flags().StringVar(&gen.Selector, "selector", "", "DNS selector of the key (default: ALGORITHM-YYYYMMDD)")
	generate.Flags().StringVar(&gen.Algorithm, "algorithm", "rsa", "key algorithm: rsa or ed25519")
	var selector string
	show := &cobra.Command{
		Use:     "show DOMAIN",
		Short:   "Print the DNS records of a domain's DKIM keys",
		Example: "  clustermail dkim show example.org\n  clustermail dkim show example.org --selector rsa-20261129",
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: opts.runE(func(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
			return opts.dkimShow(ctx, c, cmd, args[0], selector)
		}),
	}
	show.Flags().StringVar(&selector, "selector", "", "only this key")
	cmd.AddCommand(
		generate,
		show,
		&cobra.Command{
			Use:     "list [DOMAIN]",
			Aliases: []string{"ls"},
			Short:   "List the DKIM keys, of all domains or of one",
			Example: "  clustermail dkim list\n  clustermail dkim list example.org --json",
			Args:    usageArgs(cobra.MaximumNArgs(1)),
			RunE:    opts.runE(opts.dkimList),
		},
		&cobra.Command{
			Use:     "remove DOMAIN SELECTOR",
			Aliases: []string{"rm"},
			Short:   "Delete a DKIM key; the domain's next oldest key of that algorithm signs from then on",
			Example: "  clustermail dkim remove example.org rsa-20250101",
			Args:    usageArgs(cobra.ExactArgs(2)),
			RunE:    opts.runE(opts.dkimRemove),
		},
	)
	return cmd
}

func (o *apiOptions) dkimGenerate(ctx context.Context, c *api.Client, cmd *cobra.Command, req api.DKIMGenerateRequest) error {
	req.Algorithm = strings.ToLower(req.Algorithm)
	if req.Algorithm != "rsa" && req.Algorithm != "ed25519" {
		return opError("dkim generate", req.Domain, fmt.Errorf("--algorithm must be rsa or ed25519, not %q", req.Algorithm))
	}
	k, err := c.GenerateDKIMKey(ctx, req)
	if err != nil {
		return opError("dkim generate", req.Domain, err)
	}
	if o.json {
		return printJSON(cmdOut(cmd), k)
	}
	w := cmdOut(cmd)
	fmt.Fprintf(w, "; DKIM key %s (%s) of %s: publish this TXT record in the zone of %s\n", k.Selector, k.Algorithm, k.Domain, k.Domain)
	if !k.Active {
		old := "OLD-SELECTOR"
		if keys, err := c.DKIMKeys(ctx, k.Domain); err == nil {
			for _, o := range keys {
				if o.Active && o.Algorithm == k.Algorithm {
					old = o.Selector
				}
			}
		}
		fmt.Fprintf(w, "; the older %s key %s still signs; once this record is published, remove it: clustermail dkim remove %s %s\n",
			k.Algorithm, old, k.Domain, old)
	}
	if k.Algorithm == "ed25519" {
		fmt.Fprintln(w, "; some receivers only verify RSA signatures: keep an RSA key for this domain too")
	}
	return writeZoneLine(w, k)
}

func writeZoneLine(w io.Writer, k api.DKIMKey) error {
	_, err := fmt.Fprintln(w, signing.ZoneLine(k.DNSName, k.DNSValue))
	return err
}

func (o *apiOptions) dkimShow(ctx context.Context, c *api.Client, cmd *cobra.Command, domain, selector string) error {
	keys, err := c.DKIMKeys(ctx, domain)
	if err != nil {
		return opError("dkim show", domain, err)
	}
	var out []api.DKIMKey
	for _, k := range keys {
		if selector == "" || strings.EqualFold(k.Selector, selector) {
			out = append(out, k)
		}
	}
	switch {
	case len(out) == 0 && selector != "":
		return opError("dkim show", domain, fmt.Errorf("no DKIM key with selector %s", selector))
	case len(out) == 0:
		return opError("dkim show", domain, fmt.Errorf("no DKIM key: create one with clustermail dkim generate %s", domain))
	}
	if o.json {
		return printJSON(cmdOut(cmd), out)
	}
	w := cmdOut(cmd)
	for _, k := range out {
		state := "signs"
		if !k.Active {
			state = "waits for the older " + k.Algorithm + " key to be removed"
		}
		fmt.Fprintf(w, "; %s (%s), created %s, %s\n", k.Selector, k.Algorithm, formatTime(k.Created), state)
		if err := writeZoneLine(w, k); err != nil {
			return err
		}
	}
	return nil
}

func (o *apiOptions) dkimList(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
	domain := ""
	if len(args) == 1 {
		domain = args[0]
	}
	keys, err := c.DKIMKeys(ctx, domain)
	if err != nil {
		return opError("dkim list", domain, err)
	}
	if o.json {
		return printJSON(cmdOut(cmd), keys)
	}
	if len(keys) == 0 {
		_, err := fmt.Fprintln(cmdOut(cmd), "no DKIM keys")
		return err
	}
	t := newTable(cmdOut(cmd), "domain", "selector", "algorithm", "signing", "created")
	for _, k := range keys {
		signs := "no"
		if k.Active {
			signs = "yes"
		}
		t.row(k.Domain, k.Selector, k.Algorithm, signs, formatTime(k.Created))
	}
	return t.flush()
}

func (o *apiOptions) dkimRemove(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
	if err := c.RemoveDKIMKey(ctx, args[0], args[1]); err != nil {
		return opError("dkim remove", args[0]+" "+args[1], err)
	}
	if o.json {
		return nil
	}
	_, err := fmt.Fprintf(cmdOut(cmd), "removed DKIM key %s of %s; leave its DNS record published a few days, for mail already sent\n", args[1], args[0])
	return err
}
