package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"

	"clustermail/api"

	"github.com/spf13/cobra"
)

// generatedPasswordLen and passwordAlphabet give about 119 bits of entropy
// (20 × log2 62) while staying easy to copy: no symbols that a shell or a
// mail client's login form would mangle.
const (
	generatedPasswordLen = 20
	passwordAlphabet     = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// userAddOptions are the flags of "user add".
type userAddOptions struct {
	passwordStdin bool
	node          string
	quota         string
}

// newUserCmd returns "clustermail user": mail accounts.
func newUserCmd() *cobra.Command {
	opts := &apiOptions{}
	cmd := newGroupCmd("user", "Manage mail accounts", opts)

	var add userAddOptions
	addCmd := &cobra.Command{
		Use:   "add ADDRESS",
		Short: "Create a mail account",
		Long: "Create a mail account. Without --password-stdin a strong random password is\n" +
			"generated and printed once. The cluster picks the node that owns the mailbox\n" +
			"unless --node says which. --quota takes sizes like 500M, 2G, 1.5GiB or a\n" +
			"number of bytes (powers of 1024); 0, the default, means unlimited.",
		Example: "  clustermail user add alice@example.org\n" +
			"  printf '%s\\n' \"$PASSWORD\" | clustermail user add bob@example.org --password-stdin --quota 2G\n" +
			"  clustermail user add carol@example.org --node node2",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: opts.runE(func(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
			return opts.userAdd(ctx, c, cmd, args, add)
		}),
	}
	addCmd.Flags().BoolVar(&add.passwordStdin, "password-stdin", false, "read the password from the first line of stdin")
	addCmd.Flags().StringVar(&add.node, "node", "", "name of the node that should own the mailbox")
	addCmd.Flags().StringVar(&add.quota, "quota", "0", "mailbox size limit, e.g. 500M or 2G; 0 means unlimited")

	passwdCmd := &cobra.Command{
		Use:     "passwd ADDRESS --password-stdin",
		Short:   "Set an account's password, read from stdin",
		Example: "  printf '%s\\n' \"$PASSWORD\" | clustermail user passwd alice@example.org --password-stdin",
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE:    opts.runE(opts.userPasswd),
	}
	// The flag carries no value: it exists so that the command line says
	// where the password comes from, and so that a bare "user passwd"
	// does not sit waiting on a terminal.
	passwdCmd.Flags().Bool("password-stdin", false, "read the password from the first line of stdin (required)")
	_ = passwdCmd.MarkFlagRequired("password-stdin")

	cmd.AddCommand(
		addCmd,
		&cobra.Command{
			Use:     "list [DOMAIN]",
			Aliases: []string{"ls"},
			Short:   "List mail accounts, of one domain if given",
			Example: "  clustermail user list\n  clustermail user list example.org --json",
			Args:    usageArgs(cobra.MaximumNArgs(1)),
			RunE:    opts.runE(opts.userList),
		},
		&cobra.Command{
			Use:     "show ADDRESS",
			Short:   "Show one mail account, including the node that owns its mailbox",
			Example: "  clustermail user show alice@example.org",
			Args:    usageArgs(cobra.ExactArgs(1)),
			RunE:    opts.runE(opts.userShow),
		},
		passwdCmd,
		&cobra.Command{
			Use:     "remove ADDRESS",
			Aliases: []string{"rm"},
			Short:   "Delete a mail account",
			Example: "  clustermail user remove alice@example.org",
			Args:    usageArgs(cobra.ExactArgs(1)),
			RunE:    opts.runE(opts.userRemove),
		},
	)
	return cmd
}

// userAddResult is the --json answer of "user add": the API's User plus,
// only when it was generated here, the password, because a script that asked
// for JSON has no other way to learn it.
type userAddResult struct {
	api.User
	Password string `json:"password,omitempty"`
}

func (o *apiOptions) userAdd(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string, add userAddOptions) error {
	address := args[0]
	quota, err := parseSize(add.quota)
	if err != nil {
		return fmt.Errorf("user add: %s: --quota: %w", address, err)
	}
	var password, generated string
	if add.passwordStdin {
		if password, err = readPassword(cmd.InOrStdin()); err != nil {
			return fmt.Errorf("user add: %s: %w", address, err)
		}
	} else {
		if generated, err = generatePassword(); err != nil {
			return fmt.Errorf("user add: %s: %w", address, err)
		}
		password = generated
	}
	u, err := c.AddUser(ctx, api.UserAddRequest{Address: address, Password: password, Node: add.node, Quota: quota})
	if err != nil {
		return opError("user add", address, err)
	}
	if o.json {
		return printJSON(cmdOut(cmd), userAddResult{User: u, Password: generated})
	}
	w := cmdOut(cmd)
	if _, err := fmt.Fprintf(w, "added user %s (node %s, quota %s)\n", u.Address, orDash(u.Node), formatQuota(u.Quota)); err != nil {
		return err
	}
	if generated != "" {
		_, err = fmt.Fprintf(w, "password: %s\nKeep this password now: it is stored only as a hash and will not be shown again.\n", generated)
	}
	return err
}

func (o *apiOptions) userList(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
	var domain string
	if len(args) == 1 {
		domain = args[0]
	}
	users, err := c.Users(ctx, domain)
	if err != nil {
		return opError("user list", domain, err)
	}
	if o.json {
		return printJSON(cmdOut(cmd), users)
	}
	if len(users) == 0 {
		msg := "no users"
		if domain != "" {
			msg += " in " + domain
		}
		_, err := fmt.Fprintln(cmdOut(cmd), msg)
		return err
	}
	t := newTable(cmdOut(cmd), "address", "node", "quota", "created")
	for _, u := range users {
		t.row(u.Address, u.Node, formatQuota(u.Quota), formatTime(u.Created))
	}
	return t.flush()
}

func (o *apiOptions) userShow(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
	u, err := c.User(ctx, args[0])
	if err != nil {
		return opError("user show", args[0], err)
	}
	if o.json {
		return printJSON(cmdOut(cmd), u)
	}
	return printKV(cmdOut(cmd), []kv{
		{"address", u.Address},
		{"owner node", u.Node},
		{"quota", formatQuota(u.Quota)},
		{"created", formatTime(u.Created)},
	})
}

func (o *apiOptions) userPasswd(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
	address := args[0]
	password, err := readPassword(cmd.InOrStdin())
	if err != nil {
		return fmt.Errorf("user passwd: %s: %w", address, err)
	}
	if err := c.SetPassword(ctx, address, password); err != nil {
		return opError("user passwd", address, err)
	}
	if o.json {
		return nil
	}
	_, err = fmt.Fprintf(cmdOut(cmd), "password of %s changed\n", address)
	return err
}

func (o *apiOptions) userRemove(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
	if err := c.RemoveUser(ctx, args[0]); err != nil {
		return opError("user remove", args[0], err)
	}
	if o.json {
		return nil
	}
	_, err := fmt.Fprintf(cmdOut(cmd), "removed user %s\n", args[0])
	return err
}

// maxPasswordLine bounds how much of stdin is read looking for the end of
// the first line, so that piping a large file by mistake fails quickly.
const maxPasswordLine = 4096

// readPassword returns the first line of r without its line ending. Only
// "\n" and "\r\n" are stripped: spaces may be part of a password.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReaderSize(io.LimitReader(r, maxPasswordLine+1), maxPasswordLine+1).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	if !strings.HasSuffix(line, "\n") && len(line) > maxPasswordLine {
		return "", fmt.Errorf("read password from stdin: first line longer than %d bytes", maxPasswordLine)
	}
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", errors.New("empty password on stdin")
	}
	return line, nil
}

// generatePassword returns a random password drawn uniformly from
// passwordAlphabet with crypto/rand.
func generatePassword() (string, error) {
	size := big.NewInt(int64(len(passwordAlphabet)))
	b := make([]byte, generatedPasswordLen)
	for i := range b {
		n, err := rand.Int(rand.Reader, size)
		if err != nil {
			return "", fmt.Errorf("generate password: %w", err)
		}
		b[i] = passwordAlphabet[n.Int64()]
	}
	return string(b), nil
}

// orDash returns s, or "-" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
