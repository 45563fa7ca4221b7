package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"clustermail/api"
	"clustermail/bench/dirscale"
)

type benchDirOptions struct {
	accounts    int
	domain      string
	smtp        string
	apiAccounts int
	apiConc     int
	rcpts       int
	sessions    int
	work        string
	newNode     bool
	yes         bool
}

// benchDirResult is what "bench directory" measured; --json prints it.
type benchDirResult struct {
	Accounts          int                `json:"accounts"`
	APIAccounts       int                `json:"api_accounts"`
	APIAccountsPerSec float64            `json:"api_accounts_per_s"`
	APIEstimateHours  float64            `json:"api_estimate_hours"` // for Accounts at that rate
	BaselineRCPT      dirscale.Lookup    `json:"baseline_rcpt"`      // before the bulk load
	BuildApplyS       float64            `json:"build_apply_s"`      // applying the accounts to a private FSM
	BuildPersistS     float64            `json:"build_persist_s"`
	SnapshotFileBytes int64              `json:"snapshot_file_bytes"`
	RestoreS          float64            `json:"restore_s"`
	CatchUpS          map[string]float64 `json:"catch_up_s"` // after the restore, per node
	RCPTHit           dirscale.Lookup    `json:"rcpt_hit"`
	RCPTMiss          dirscale.Lookup    `json:"rcpt_miss"`
	SnapshotSaveBytes int64              `json:"snapshot_save_bytes"`
	SnapshotSaveS     float64            `json:"snapshot_save_s"`
	RSSMB             map[string]float64 `json:"rss_mb"`
	NewNodeReadyS     float64            `json:"new_node_ready_s,omitempty"`
	NewNodeLog        []string           `json:"new_node_log,omitempty"` // its log lines about snapshots
}

func newBenchDirectoryCmd(opts *benchOptions) *cobra.Command {
	var o benchDirOptions
	cmd := &cobra.Command{
		Use:   "directory --yes",
		Short: "Load a large directory into a test cluster and measure lookups, snapshots and catch-up",
		Long: `Measure clustermail with a large directory, against a TEST cluster:

 1. create --api-accounts accounts through the admin API (--api-conc at a
    time) and report the rate, and how long --accounts would take that way
    (each account is one Raft command, its password hashed with argon2id
    by the proposer);
 2. time RCPT TO round trips over SMTP (--smtp) for those accounts: the
    baseline with a small directory;
 3. build the large directory: save the cluster's snapshot, apply
    --accounts account-add commands to it in a private state machine
    (the directory's own handlers, the same encoding as the API's, one
    shared password hash), and restore the result through the API
    (POST /v1/cluster/snapshot/restore). THIS REPLACES THE CLUSTER'S
    REPLICATED STATE (directory and queue) with its current state plus
    the accounts: use a test cluster with an empty queue;
 4. time the restore and how long each node takes to catch up;
 5. time RCPT TO round trips for random existing accounts and for
    unknown users;
 6. take a Raft snapshot through the API and report its size and time;
 7. read each node's resident memory from /metrics;
 8. with --new-node, start one more node (this binary, loopback ports,
    a temporary data dir), time until it is ready and caught up, then
    make it leave and remove its data.`,
		Example: `  clustermail bench directory --api http://127.0.0.1:8080 --smtp 127.0.0.1:2525 --accounts 1000000 --yes`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !o.yes {
				return errors.New("bench directory replaces the cluster's replicated state (see --help): run it on a test cluster, with --yes")
			}
			return runBenchDirectory(cmd, opts, o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.accounts, "accounts", 1000000, "accounts to load")
	f.StringVar(&o.domain, "domain", "bench.test", "domain of the accounts (added if missing)")
	f.StringVar(&o.smtp, "smtp", "", "SMTP address of the node at --api (default: from the cluster's member list)")
	f.IntVar(&o.apiAccounts, "api-accounts", 200, "accounts to create through the API, to measure its rate")
	f.IntVar(&o.apiConc, "api-conc", 8, "concurrent API requests when creating accounts")
	f.IntVar(&o.rcpts, "rcpts", 20000, "RCPT TO commands per lookup measurement")
	f.IntVar(&o.sessions, "sessions", 4, "concurrent SMTP sessions for the lookup measurement")
	f.StringVar(&o.work, "work-dir", "", "where to build the snapshot (default: a temporary directory, removed)")
	f.BoolVar(&o.newNode, "new-node", true, "start one more node and time its catch-up")
	f.BoolVar(&o.yes, "yes", false, "confirm that the cluster's state may be replaced")
	return cmd
}

func runBenchDirectory(cmd *cobra.Command, opts *benchOptions, o benchDirOptions) error {
	ctx, cancel := signalContext(cmd.Context())
	defer cancel()
	out := cmdOut(cmd)
	say := func(format string, args ...any) {
		if !opts.json {
			fmt.Fprintf(out, format+"\n", args...)
		}
	}
	c := opts.client()
	res := benchDirResult{Accounts: o.accounts, APIAccounts: o.apiAccounts, CatchUpS: map[string]float64{}, RSSMB: map[string]float64{}}
	nodes, err := dirscale.LiveNodes(ctx, c)
	if err != nil {
		return fmt.Errorf("bench directory: %w", err)
	}
	members, err := c.Members(ctx)
	if err != nil {
		return fmt.Errorf("bench directory: %w", err)
	}
	if o.smtp == "" {
		st, err := c.Status(ctx)
		if err != nil {
			return fmt.Errorf("bench directory: %w", err)
		}
		for _, m := range members {
			if m.Name == st.Node {
				o.smtp = m.SMTPAddr
			}
		}
		if strings.HasPrefix(o.smtp, ":") {
			o.smtp = "127.0.0.1" + o.smtp
		}
	}
	if _, err := c.AddDomain(ctx, o.domain); err != nil {
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != 409 {
			return fmt.Errorf("bench directory: add domain: %w", err)
		}
	}
	say("cluster    %d live nodes: %s; SMTP %s", len(nodes), strings.Join(nodes, ", "), o.smtp)

	// 1-2: the public API's rate, and lookups with a small directory.
	prefix := fmt.Sprintf("%x", rand.Uint32())
	if o.apiAccounts > 0 {
		d, err := dirscale.APIAccounts(ctx, c, o.domain, prefix, o.apiAccounts, o.apiConc)
		if err != nil {
			return fmt.Errorf("bench directory: %w", err)
		}
		res.APIAccountsPerSec = float64(o.apiAccounts) / d.Seconds()
		res.APIEstimateHours = float64(o.accounts) / res.APIAccountsPerSec / 3600
		say("api        %d accounts in %.1f s through the API (%d concurrent): %.1f accounts/s; %d would take %.1f h",
			o.apiAccounts, d.Seconds(), o.apiConc, res.APIAccountsPerSec, o.accounts, res.APIEstimateHours)
		res.BaselineRCPT, err = dirscale.RCPTLatency(ctx, o.smtp, o.sessions, o.rcpts, 250, func(i int) string {
			return fmt.Sprintf("api-%s-%d@%s", prefix, rand.IntN(o.apiAccounts), o.domain)
		})
		if err != nil {
			return fmt.Errorf("bench directory: baseline lookups: %w", err)
		}
		sayLookup(say, fmt.Sprintf("rcpt       small directory (%d accounts), existing", o.apiAccounts), res.BaselineRCPT)
	}

	// 3-4: the bulk load through a snapshot restore.
	work := o.work
	if work == "" {
		if work, err = os.MkdirTemp("", "clustermail-bench-dir-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}
	say("build      applying %d account commands to a private state machine ...", o.accounts)
	b, err := dirscale.Build(ctx, c, o.domain, o.accounts, nodes, work)
	if err != nil {
		return fmt.Errorf("bench directory: build: %w", err)
	}
	res.BuildApplyS, res.BuildPersistS, res.SnapshotFileBytes = b.ApplyTime.Seconds(), b.PersistDur.Seconds(), b.FileBytes
	say("build      applied in %.1f s (%.0f accounts/s), snapshot written in %.1f s: %s",
		b.ApplyTime.Seconds(), float64(o.accounts)/b.ApplyTime.Seconds(), b.PersistDur.Seconds(), formatSize(b.FileBytes))
	d, err := dirscale.Restore(ctx, c, b.File)
	if err != nil {
		return fmt.Errorf("bench directory: %w", err)
	}
	res.RestoreS = d.Seconds()
	say("restore    %.1f s (upload, leader restore, followers installing the snapshot)", d.Seconds())
	caught, err := dirscale.CaughtUp(ctx, c, 10*time.Minute)
	for name, d := range caught {
		res.CatchUpS[name] = d.Seconds()
		say("catch-up   %s ready and applied %.1f s after the restore returned", name, d.Seconds())
	}
	if err != nil {
		return fmt.Errorf("bench directory: %w", err)
	}

	// 5: lookups in the large directory.
	if res.RCPTHit, err = dirscale.RCPTLatency(ctx, o.smtp, o.sessions, o.rcpts, 250, func(int) string {
		return dirscale.Address(rand.IntN(o.accounts), o.domain)
	}); err != nil {
		return fmt.Errorf("bench directory: lookups: %w", err)
	}
	sayLookup(say, fmt.Sprintf("rcpt       large directory (%d accounts), existing", o.accounts), res.RCPTHit)
	if res.RCPTMiss, err = dirscale.RCPTLatency(ctx, o.smtp, o.sessions, o.rcpts, 550, func(int) string {
		return fmt.Sprintf("nobody%07d@%s", rand.IntN(o.accounts), o.domain)
	}); err != nil {
		return fmt.Errorf("bench directory: lookups: %w", err)
	}
	sayLookup(say, fmt.Sprintf("rcpt       large directory (%d accounts), unknown user", o.accounts), res.RCPTMiss)

	// 6-7: a Raft snapshot, and memory.
	size, sd, err := dirscale.SaveSize(ctx, c)
	if err != nil {
		return fmt.Errorf("bench directory: snapshot: %w", err)
	}
	res.SnapshotSaveBytes, res.SnapshotSaveS = size, sd.Seconds()
	say("snapshot   taken and streamed in %.1f s: %s", sd.Seconds(), formatSize(size))
	for _, m := range members {
		if rss, err := dirscale.RSS(ctx, m.APIAddr); err == nil {
			res.RSSMB[m.Name] = float64(rss) / (1 << 20)
			say("memory     %s resident %.0f MiB", m.Name, float64(rss)/(1<<20))
		}
	}

	// 8: a new node catching up.
	if o.newNode {
		d, lines, err := newNodeCatchUp(ctx, members, work)
		if err != nil {
			return fmt.Errorf("bench directory: new node: %w", err)
		}
		res.NewNodeReadyS, res.NewNodeLog = d.Seconds(), lines
		say("new node   ready and caught up %.1f s after its start", d.Seconds())
		for _, l := range lines {
			say("           %s", l)
		}
	}
	if opts.json {
		return printJSON(out, res)
	}
	return nil
}

func sayLookup(say func(string, ...any), what string, l dirscale.Lookup) {
	say("%s: %d RCPTs, %.0f/s; p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.1f ms; unexpected replies %d",
		what, l.RCPTs, l.PerSec, l.P50, l.P90, l.P99, l.Max, l.Errors)
	if l.Errors > 0 {
		say("           unexpected replies by code %v, e.g. %s", l.Codes, strings.Join(l.Examples, "; "))
	}
}

// newNodeCatchUp starts this binary as one more node joining the cluster,
// waits until it is ready with the leader's commit index applied, then
// makes it leave (SIGTERM) and removes its data. It returns the time from
// its start and its log lines that mention snapshots.
func newNodeCatchUp(ctx context.Context, members []api.Member, work string) (time.Duration, []string, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, nil, err
	}
	var join []string
	for _, m := range members {
		if m.GossipState == "alive" {
			join = append(join, m.GossipAddr)
		}
	}
	// Four free loopback ports, held together so that they differ, and
	// released just before the node binds them.
	ports := make([]string, 4)
	var held []net.Listener
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, nil, err
		}
		held = append(held, l)
		ports[i] = l.Addr().String()
	}
	for _, l := range held {
		l.Close()
	}
	dir := filepath.Join(work, "newnode")
	logPath := filepath.Join(work, "newnode.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return 0, nil, err
	}
	defer logf.Close()
	c := exec.Command(exe, "server", "--name", "bench-newnode", "--data-dir", dir, "--gossip-addr", ports[0], "--raft-addr", ports[1],
		"--api-addr", ports[2], "--smtp-addr", ports[3], "--join", strings.Join(join, ","), "--hostname", "bench-newnode.test")
	c.Stdout, c.Stderr = logf, logf
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := c.Start(); err != nil {
		return 0, nil, err
	}
	exited := make(chan struct{})
	go func() { _ = c.Wait(); close(exited) }()
	defer func() {
		_ = c.Process.Signal(syscall.SIGTERM) // leave the cluster
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = c.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	}()
	leader := api.NewClient(members[0].APIAddr)
	nc := api.NewClient(ports[2])
	var took time.Duration
	for {
		select {
		case <-exited:
			return 0, nil, fmt.Errorf("the new node exited; its log is %s", logPath)
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		default:
		}
		ls, err1 := leader.Status(ctx)
		ns, err2 := nc.Status(ctx)
		if err1 == nil && err2 == nil && ns.AppliedIndex > 0 && ns.AppliedIndex+1 >= ls.CommitIndex && nc.Ready(ctx) == nil {
			took = time.Since(start)
			break
		}
		if time.Since(start) > 10*time.Minute {
			return 0, nil, errors.New("the new node did not catch up in 10 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(logPath)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(strings.ToLower(l), "snapshot") {
			lines = append(lines, l)
		}
	}
	return took, lines, nil
}
