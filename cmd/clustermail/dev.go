package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"clustermail/api"
	"clustermail/certs"
)

type devOptions struct {
	dir    string
	nodes  int
	offset int
	domain string
	user   string
}

func newDevCmd() *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local three-node cluster on loopback, with a demo domain and account",
		Long: `Start a working cluster on 127.0.0.1 in one command: three clustermail
server processes, a domain (example.test) and an account whose password is
printed. Ctrl-C stops all of it. With --dir the data is kept, and running
dev again with the same --dir brings the same cluster back.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDev(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "", "data directory (default: a new temporary directory, removed on exit)")
	f.IntVar(&o.nodes, "nodes", 3, "number of nodes")
	f.IntVar(&o.offset, "port-offset", 0, "added to every port (SMTP 2525+, API 8080+, cluster 8300+, gossip 7946+)")
	f.StringVar(&o.domain, "domain", "example.test", "demo domain")
	f.StringVar(&o.user, "user", "demo", "local part of the demo account")
	return cmd
}

type devNode struct {
	name                     string
	smtp, api, raft, gossip  string
	submission, submissions  string
	imap, imaps, pop3, pop3s string
	cmd                      *exec.Cmd
	exited                   chan struct{}
}

func runDev(cmd *cobra.Command, o devOptions) error {
	out := cmd.OutOrStdout()
	if o.nodes < 1 || o.nodes > 9 {
		return errors.New("--nodes must be between 1 and 9")
	}
	temp := o.dir == ""
	if temp {
		d, err := os.MkdirTemp("", "clustermail-dev-")
		if err != nil {
			return err
		}
		o.dir = d
		defer os.RemoveAll(d)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	p := func(base, i int) string { return "127.0.0.1:" + strconv.Itoa(base+o.offset+i) }
	var nodes []*devNode
	var gossip []string
	for i := 0; i < o.nodes; i++ {
		n := &devNode{name: "n" + strconv.Itoa(i+1), smtp: p(2525, i), api: p(8080, i), raft: p(8300, i), gossip: p(7946, i),
			submission: p(2587, i), submissions: p(2465, i), imap: p(1143, i), imaps: p(1993, i), pop3: p(1110, i), pop3s: p(1895, i),
			exited: make(chan struct{})}
		nodes = append(nodes, n)
		gossip = append(gossip, n.gossip)
	}
	certFile, keyFile, err := certs.WriteSelfSigned(filepath.Join(o.dir, "tls"), []string{"localhost", "127.0.0.1"})
	if err != nil {
		return fmt.Errorf("generate a TLS certificate: %w", err)
	}
	var outMu sync.Mutex
	stopAll := func() {
		for _, n := range nodes {
			if n.cmd != nil && n.cmd.Process != nil {
				_ = n.cmd.Process.Signal(syscall.SIGINT)
			}
		}
		for _, n := range nodes {
			if n.cmd != nil {
				select {
				case <-n.exited:
				case <-time.After(20 * time.Second):
					_ = n.cmd.Process.Kill()
					<-n.exited
				}
			}
		}
	}
	for _, n := range nodes {
		c := exec.Command(exe, "server", "--name", n.name, "--data-dir", o.dir+"/"+n.name,
			"--gossip-addr", n.gossip, "--raft-addr", n.raft, "--api-addr", n.api, "--smtp-addr", n.smtp,
			"--bootstrap-expect", strconv.Itoa(o.nodes), "--join", strings.Join(gossip, ","),
			"--hostname", n.name+".clustermail.dev", "--dead-server-grace", "24h",
			"--tls-cert", certFile, "--tls-key", keyFile, "--submission-addr", n.submission, "--submissions-addr", n.submissions,
			"--imap-addr", n.imap, "--imaps-addr", n.imaps, "--pop3-addr", n.pop3, "--pop3s-addr", n.pop3s)
		// Own process group: the terminal's Ctrl-C reaches dev only, which
		// then stops the nodes in order.
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		pr, pw := io.Pipe()
		c.Stdout, c.Stderr = pw, pw
		go prefixLines(pr, "["+n.name+"] ", os.Stderr, &outMu)
		if err := c.Start(); err != nil {
			stopAll()
			return fmt.Errorf("start %s: %w", n.name, err)
		}
		n.cmd = c
		go func(n *devNode, pw *io.PipeWriter) {
			err := n.cmd.Wait()
			pw.Close()
			close(n.exited)
			if err != nil {
				outMu.Lock()
				fmt.Fprintf(os.Stderr, "[%s] exited: %v\n", n.name, err)
				outMu.Unlock()
			}
		}(n, pw)
	}
	defer stopAll()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-sig; cancel() }()

	password, err := devSetup(ctx, nodes, o)
	if err != nil {
		return err
	}
	outMu.Lock()
	printDevBanner(out, nodes, o, password, temp)
	outMu.Unlock()
	<-ctx.Done()
	fmt.Fprintln(out, "\nstopping the cluster…")
	return nil
}

// devSetup waits for every node to be ready, then creates the demo domain
// and account (or resets the account's password on a reused --dir).
func devSetup(ctx context.Context, nodes []*devNode, o devOptions) (string, error) {
	deadline := time.Now().Add(90 * time.Second)
	for _, n := range nodes {
		c := api.NewClient(n.api)
		for {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			select {
			case <-n.exited:
				return "", fmt.Errorf("%s exited before it was ready (see its log above)", n.name)
			default:
			}
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := c.Ready(rctx)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("%s is not ready after 90 s: %v", n.name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	c := api.NewClient(nodes[0].api)
	if _, err := c.AddDomain(ctx, o.domain); err != nil {
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != 409 {
			return "", fmt.Errorf("add domain %s: %w", o.domain, err)
		}
	}
	password := devPassword()
	addr := o.user + "@" + o.domain
	if _, err := c.AddUser(ctx, api.UserAddRequest{Address: addr, Password: password}); err != nil {
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != 409 {
			return "", fmt.Errorf("add user %s: %w", addr, err)
		}
		if err := c.SetPassword(ctx, addr, password); err != nil {
			return "", fmt.Errorf("reset password of %s: %w", addr, err)
		}
	}
	return password, nil
}

func devPassword() string {
	const chars = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 16)
	for i := range b {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(chars))))
		b[i] = chars[n.Int64()]
	}
	return string(b)
}

func printDevBanner(w io.Writer, nodes []*devNode, o devOptions, password string, temp bool) {
	addr := o.user + "@" + o.domain
	fmt.Fprintf(w, "\nclustermail dev: a %d-node cluster is up.\n\n", len(nodes))
	t := newTable(w, "node", "smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "admin api")
	for _, n := range nodes {
		t.row(n.name, n.smtp, n.submission, n.submissions, n.imap, n.imaps, n.pop3, n.pop3s, "http://"+n.api)
	}
	_ = t.flush()
	where := o.dir
	if temp {
		where += " (removed when dev stops; use --dir to keep it)"
	}
	fmt.Fprintf(w, "\ndata:     %s\ndomain:   %s\naccount:  %s\npassword: %s\n", where, o.domain, addr, password)
	self := selfName()
	fmt.Fprintf(w, `
Send a first message (to any node):
  swaks --server %[1]s --from you@example.org --to %[2]s --header 'Subject: hello' --body 'first message'
or, without swaks:
  python3 -c "import smtplib; smtplib.SMTP('127.0.0.1', %[3]s).sendmail('you@example.org', ['%[2]s'], 'Subject: hello\r\n\r\nfirst message\r\n')"

Send as %[2]s through submission (STARTTLS with dev's self-signed certificate, AUTH):
  swaks --server %[5]s --tls --auth-user %[2]s --auth-password '%[6]s' --from %[2]s --to %[2]s --header 'Subject: via submission'

Read it with a mail client (any node; TLS with dev's self-signed certificate):
  IMAP  127.0.0.1:%[7]s (STARTTLS) or %[8]s (TLS), POP3 %[9]s (STLS) or %[10]s (TLS), user %[2]s
  curl -k --ssl-reqd 'imap://127.0.0.1:%[7]s/INBOX;UID=1' -u '%[2]s:%[6]s'

Or through the admin API:
  %[4]s mailbox list %[2]s
  %[4]s mailbox show %[2]s 1

Look at the cluster:
  %[4]s cluster members
  %[4]s cluster status
`, nodes[len(nodes)-1].smtp, addr, strings.TrimPrefix(nodes[len(nodes)-1].smtp, "127.0.0.1:"), self, nodes[0].submission, password,
		port(nodes[0].imap), port(nodes[0].imaps), port(nodes[0].pop3), port(nodes[0].pop3s))
	if o.offset != 0 {
		fmt.Fprintf(w, "  (add --api http://%s to the commands: the default API is 127.0.0.1:8080)\n", nodes[0].api)
	}
	fmt.Fprintln(w, "\nCtrl-C stops the cluster.")
}

func port(addr string) string { return strings.TrimPrefix(addr, "127.0.0.1:") }

// selfName is how the user can run this binary again: "clustermail" when
// that is what PATH finds, else a path relative to the working directory.
func selfName() string {
	exe, err := os.Executable()
	if err != nil {
		return "clustermail"
	}
	if p, err := exec.LookPath("clustermail"); err == nil {
		if a, err := filepath.EvalSymlinks(p); err == nil {
			if b, err := filepath.EvalSymlinks(exe); err == nil && a == b {
				return "clustermail"
			}
		}
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, exe); err == nil && !strings.HasPrefix(rel, "..") {
			return "./" + rel
		}
	}
	return exe
}

func prefixLines(r io.Reader, prefix string, w io.Writer, mu *sync.Mutex) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mu.Lock()
		fmt.Fprintln(w, prefix+sc.Text())
		mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r)
}
