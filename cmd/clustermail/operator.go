package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"clustermail/api"

	"github.com/spf13/cobra"
)

// Environment variables the operator commands read. The token is only taken
// from the environment, never from a flag, so that it does not end up in
// shell history or in the process list.
const (
	envAPI   = "CLUSTERMAIL_API"
	envToken = "CLUSTERMAIL_TOKEN"
)

// defaultTimeout bounds every operator command: long enough for a leadership
// transfer or a Raft commit on a busy cluster, short enough that a script
// talking to a wedged node does not hang forever.
const defaultTimeout = 30 * time.Second

// addOperatorCommands registers the commands that talk to the admin API.
func addOperatorCommands(root *cobra.Command) {
	root.AddCommand(
		newClusterCmd(),
		newDomainCmd(),
		newDKIMCmd(),
		newUserCmd(),
		newAliasCmd(),
		newMailboxCmd(),
		newQueueCmd(),
		newBenchCmd(),
		newKeyringCmd(),
	)
}

// apiOptions holds the flags shared by every operator command. Each command
// group owns one instance, registered as persistent flags on the group rather
// than on root, because "server" and "dev" have flags of their own and must
// not inherit --api or --json.
type apiOptions struct {
	url     string
	json    bool
	timeout time.Duration
}

// newGroupCmd returns a command group (cluster, domain, ...) carrying the
// shared operator flags bound to opts.
func newGroupCmd(use, short string, opts *apiOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		// A typo like "domain lst" must be an error (exit 1), not help
		// printed with exit 0 as cobra does for groups by default.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q; run '%s --help' for the list", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&opts.url, "api", defaultAPIURL(), "admin API URL of the node to talk to (env "+envAPI+")")
	pf.BoolVar(&opts.json, "json", false, "print the API's JSON answer, indented, instead of text")
	pf.DurationVar(&opts.timeout, "timeout", defaultTimeout, "give up on the request after this long")
	// Root silences usage so that API errors are not followed by a wall of
	// help; for flag mistakes the usage line is what the operator needs.
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w\nusage: %s", err, c.UseLine())
	})
	return cmd
}

// defaultAPIURL is the --api default: the environment wins over the built-in
// address so that an operator can point a whole shell session at one node.
func defaultAPIURL() string {
	if u := os.Getenv(envAPI); u != "" {
		return u
	}
	return api.DefaultURL
}

// client returns an API client for the node at --api, authenticated with the
// token from the environment (if any).
func (o *apiOptions) client() *api.Client {
	return api.NewClient(o.url).WithToken(os.Getenv(envToken))
}

// apiFunc is the body of an operator command: it gets a context bounded by
// --timeout, a ready client and the writer all output must go to (the
// command's, so that tests can capture it).
type apiFunc func(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error

// runE adapts fn to cobra's RunE.
func (o *apiOptions) runE(fn apiFunc) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		if o.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, o.timeout)
			defer cancel()
		}
		return fn(ctx, o.client(), cmd, args)
	}
}

// usageArgs wraps a cobra argument validator so that its terse message
// ("accepts 1 arg(s), received 0") comes with the command's usage line;
// root silences usage, so otherwise the operator would not see what is
// expected.
func usageArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			return fmt.Errorf("%w\nusage: %s", err, cmd.UseLine())
		}
		return nil
	}
}

// opError prefixes err with the operation and its subject, e.g.
// "domain add: example.test: domain already exists". An authentication
// failure without a token gets a hint, since forgetting to export the token
// is by far the most common cause.
func opError(op, subject string, err error) error {
	var ae *api.Error
	if errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden) && os.Getenv(envToken) == "" {
		err = fmt.Errorf("%w (is %s set?)", err, envToken)
	}
	if subject == "" {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %s: %w", op, subject, err)
}

// cmdOut is the writer all command output goes to.
func cmdOut(cmd *cobra.Command) io.Writer { return cmd.OutOrStdout() }
