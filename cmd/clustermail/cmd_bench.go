package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"clustermail/api"
	"clustermail/bench/smtpload"
)

// benchOptions are the flags every bench command shares. Bench commands
// run for minutes, so they do not take the operator commands' --timeout.
type benchOptions struct {
	url  string
	json bool
}

func (o *benchOptions) client() *api.Client {
	return api.NewClient(o.url).WithToken(os.Getenv(envToken))
}

// newBenchCmd returns "clustermail bench": load generators and
// measurements (see bench/README.md).
func newBenchCmd() *cobra.Command {
	opts := &benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure performance: SMTP load, delivered rate, directory scale, the machine",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q; run '%s --help' for the list", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&opts.url, "api", defaultAPIURL(), "admin API URL of a clustermail node (env "+envAPI+")")
	pf.BoolVar(&opts.json, "json", false, "print the result as JSON")
	cmd.AddCommand(newBenchSMTPCmd(opts), newBenchCountCmd(opts), newBenchDirectoryCmd(opts), newBenchMachineCmd(opts))
	return cmd
}

// signalContext is cancelled by SIGINT or SIGTERM, so that an interrupted
// run still prints what it measured.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	if parent == nil {
		parent = context.Background()
	}
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

type benchSMTPOptions struct {
	targets   []string
	random    bool
	sessions  int
	messages  int
	size      string
	rcpts     []string
	from      string
	reuse     bool
	oneWrite  bool
	perConn   int
	rate      float64
	helo      string
	timeout   time.Duration
	wait      bool
	countCmd  string
	poll      time.Duration
	stall     time.Duration
	settle    time.Duration
	label     string
	result    bool
	noDrain   bool
	countOnly bool
}

func newBenchSMTPCmd(opts *benchOptions) *cobra.Command {
	var o benchSMTPOptions
	cmd := &cobra.Command{
		Use:   "smtp",
		Short: "Send a number of messages over concurrent SMTP sessions and measure accepted and delivered rates",
		Long: `Send --messages messages of --size bytes over --sessions concurrent SMTP
sessions to one or more servers (any SMTP server, not only clustermail), one
message per connection or, with --reuse, several. It prints the accepted
rate (messages that got a 250 after the final ".", per second of the whole
run), the latency from writing the final "." to reading the reply
(p50, p90, p99, max), and the failures by stage and reply code.

With --wait-delivered it then waits until every accepted message is
delivered and prints the end-to-end delivered rate, counted from the start
of the load. How delivered messages are counted:

  --count-cmd CMD   a shell command printing the number delivered so far
                    (for any server, e.g. Postfix:
                    find /tmp/pfbench/mail -path '*/new/*' -type f | wc -l)
  otherwise         the clustermail admin API at --api: the messages stored
                    in the recipients' mailboxes (mailbox stats, summed),
                    read before and after the load. A mailbox holds each
                    (queue id, recipient) once, so duplicates cannot inflate
                    the count. Then it waits for the replicated queue
                    (clustermail_queue_depth in /metrics) to be empty and
                    prints that time too.

The count is polled every --poll, which is the resolution of the delivered
time. Every recipient must be a local account of the server.`,
		Example: `  clustermail bench smtp --targets 127.0.0.1:2525,127.0.0.1:2526,127.0.0.1:2527 \
    --sessions 50 --messages 10000 --size 32K --rcpt demo@example.test --wait-delivered
  clustermail bench smtp --targets 127.0.0.1:2525 --size 1K --rcpt user@bench.test --wait-delivered \
    --count-cmd "find /tmp/pfbench/mail -path '*/new/*' -type f | wc -l"`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return runBenchSMTP(cmd, opts, o) },
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.targets, "targets", []string{"127.0.0.1:2525"}, "SMTP servers, host:port, comma-separated; connections go round-robin over them")
	f.BoolVar(&o.random, "random", false, "pick the target of each connection at random instead of round-robin")
	f.IntVar(&o.sessions, "sessions", 10, "concurrent SMTP sessions")
	f.IntVar(&o.messages, "messages", 10000, "messages to send in total")
	f.StringVar(&o.size, "size", "1K", "message size, headers included (e.g. 1K, 32K)")
	f.StringSliceVar(&o.rcpts, "rcpt", []string{"user@bench.test"}, "recipients, one per message, taken round-robin (comma-separated)")
	f.StringVar(&o.from, "from", "bench@client.test", "envelope sender")
	f.BoolVar(&o.reuse, "reuse", false, "send several messages per connection (default: one message per connection)")
	f.BoolVar(&o.oneWrite, "one-write", false, "send the body and the final \".\" in one write, as smtp-source does (the latency then includes the server reading the body; default: the dot on its own, the clock starting at the dot)")
	f.Float64Var(&o.rate, "rate", 0, "pace the load to this many messages per second over all sessions (0: as fast as the server answers); measure latency at a known load, e.g. half the peak rate")
	f.IntVar(&o.perConn, "per-conn", 0, "with --reuse, at most this many messages per connection (0: no limit)")
	f.StringVar(&o.helo, "helo", "client.test", "EHLO name")
	f.DurationVar(&o.timeout, "reply-timeout", time.Minute, "how long to wait for each reply")
	f.BoolVar(&o.wait, "wait-delivered", false, "after sending, wait until every accepted message is delivered and measure the delivered rate")
	f.StringVar(&o.countCmd, "count-cmd", "", "shell command printing how many messages are delivered so far (instead of the admin API)")
	f.DurationVar(&o.poll, "poll", 100*time.Millisecond, "with --wait-delivered, how often to count")
	f.DurationVar(&o.stall, "stall", time.Minute, "with --wait-delivered, give up after this long without progress")
	f.DurationVar(&o.settle, "settle", 10*time.Minute, "with --wait-delivered, give up after this long in all")
	f.BoolVar(&o.noDrain, "no-drain", false, "with --wait-delivered and the API, do not wait for the queue to be empty")
	f.StringVar(&o.label, "label", "", "name of the server under test, for --result-line")
	f.BoolVar(&o.result, "result-line", false, "also print one line 'RESULT peer=LABEL ... accept_mps=... deliver_mps=...' as the bench scripts do")
	return cmd
}

func runBenchSMTP(cmd *cobra.Command, opts *benchOptions, o benchSMTPOptions) error {
	size, err := parseSize(o.size)
	if err != nil {
		return err
	}
	if size < 200 || size > 1<<30 {
		return fmt.Errorf("--size %s: want 200 bytes to 1G", o.size)
	}
	ctx, cancel := signalContext(cmd.Context())
	defer cancel()
	cfg := smtpload.Config{Targets: o.targets, Random: o.random, Sessions: o.sessions, Messages: o.messages, Size: int(size),
		From: o.from, Rcpts: o.rcpts, Reuse: o.reuse, OneWrite: o.oneWrite, PerConn: o.perConn, Rate: o.rate, Helo: o.helo, Timeout: o.timeout}

	var w smtpload.Wait
	if o.wait {
		if o.countCmd != "" {
			w.Counter = smtpload.CommandCounter(o.countCmd)
		} else {
			w.Counter = smtpload.MailboxCounter(opts.client(), o.rcpts)
			if !o.noDrain {
				w.Queue = func(ctx context.Context) (int64, error) {
					return smtpload.QueueDepth(ctx, opts.url, os.Getenv(envToken))
				}
			}
		}
		w.Poll, w.Stall, w.Settle = o.poll, o.stall, o.settle
		// The count before the load: a failure here would make every
		// later figure meaningless, so stop now.
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		w.Before, err = w.Counter.Count(cctx)
		ccancel()
		if err != nil {
			return fmt.Errorf("bench smtp: count delivered messages before the load: %w", err)
		}
	}
	res, err := smtpload.Run(ctx, cfg)
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("bench smtp: %w", err)
	}
	var werr error
	if o.wait && err == nil {
		werr = smtpload.WaitDelivered(ctx, &res, w)
	}
	out := cmdOut(cmd)
	if opts.json {
		if perr := printJSON(out, res); perr != nil {
			return perr
		}
	} else {
		printBenchSMTP(out, res, o.wait)
	}
	if o.result {
		printResultLine(out, o, res)
	}
	if err != nil {
		return fmt.Errorf("bench smtp: interrupted")
	}
	if werr != nil {
		return fmt.Errorf("bench smtp: %w", werr)
	}
	if res.Accepted < res.Messages {
		return fmt.Errorf("bench smtp: %d of %d messages were not accepted", res.Messages-res.Accepted, res.Messages)
	}
	return nil
}

func printBenchSMTP(w io.Writer, r smtpload.Result, wait bool) {
	mode := "one message per connection"
	if r.Reuse {
		mode = "several messages per connection"
	}
	fmt.Fprintf(w, "targets    %s\n", strings.Join(r.Targets, ","))
	fmt.Fprintf(w, "load       %d messages of %s, %d sessions, %s (%d connections)\n", r.Messages, formatSize(int64(r.Size)), r.Sessions, mode, r.Connections)
	fmt.Fprintf(w, "accepted   %d of %d in %.2f s: %.1f msgs/s\n", r.Accepted, r.Messages, r.AcceptS, r.AcceptMPS)
	p := r.Latency
	fmt.Fprintf(w, "latency    \".\" to reply: p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms\n", p.P50, p.P90, p.P99, p.Max)
	p = r.TxnLatency
	fmt.Fprintf(w, "txn        MAIL to reply after \".\": p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms\n", p.P50, p.P90, p.P99, p.Max)
	if len(r.Errors) == 0 {
		fmt.Fprintln(w, "errors     none")
	} else {
		var parts []string
		for k, v := range r.Errors {
			parts = append(parts, fmt.Sprintf("%s: %d", k, v))
		}
		slices.Sort(parts)
		fmt.Fprintf(w, "errors     %s\n", strings.Join(parts, ", "))
	}
	if wait {
		fmt.Fprintf(w, "delivered  %d in %.2f s from the start: %.1f msgs/s", r.Delivered, r.DeliverS, r.DeliverMPS)
		if r.DrainS > 0 {
			fmt.Fprintf(w, "; queue empty after %.2f s", r.DrainS)
		}
		fmt.Fprintln(w)
	}
	if r.Note != "" {
		fmt.Fprintf(w, "note       %s\n", r.Note)
	}
}

// printResultLine prints the bench scripts' RESULT line, with the
// latencies added, so compare.sh reads both load generators alike.
func printResultLine(w io.Writer, o benchSMTPOptions, r smtpload.Result) {
	label := o.label
	if label == "" {
		label = "server"
	}
	reuse := 0
	if r.Reuse {
		reuse = 1
	}
	deliverS, deliverMPS, delivered := r.DeliverS, r.DeliverMPS, r.Delivered
	if !o.wait {
		deliverS, deliverMPS, delivered = r.AcceptS, r.AcceptMPS, int64(r.Accepted)
	}
	rc := 0
	if r.Accepted < r.Messages || (o.wait && delivered < int64(r.Accepted)) {
		rc = 1
	}
	fmt.Fprintf(w, "RESULT peer=%s gen=clustermail reuse=%d rcpts=%d size=%d conc=%d msgs=%d run=1 accept_s=%.2f accept_mps=%.1f deliver_s=%.2f deliver_mps=%.1f delivered=%d drain_s=%.2f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f errors=%d rc=%d\n",
		label, reuse, len(o.rcpts), r.Size, r.Sessions, r.Messages, r.AcceptS, r.AcceptMPS, deliverS, deliverMPS, delivered, r.DrainS,
		r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max, r.Failed, rc)
}

func newBenchCountCmd(opts *benchOptions) *cobra.Command {
	var rcpts []string
	cmd := &cobra.Command{
		Use:   "count",
		Short: "Print how many messages the recipients' mailboxes hold, summed (for scripts' COUNT_CMD)",
		Long: `Print the number of messages stored in the mailboxes of --rcpt, summed,
read through the admin API at --api (mailbox stats, served by each
mailbox's owner node). Scripts poll it as a delivered counter.`,
		Example: `  COUNT_CMD="clustermail bench count --api http://127.0.0.1:8080 --rcpt user@bench.test" ./bench/smtp-load.sh`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(context.Background(), defaultTimeout)
			defer cancel()
			n, err := smtpload.MailboxCounter(opts.client(), rcpts).Count(ctx)
			if err != nil {
				return fmt.Errorf("bench count: %w", err)
			}
			fmt.Fprintln(cmdOut(cmd), n)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&rcpts, "rcpt", []string{"user@bench.test"}, "mailboxes to count (comma-separated)")
	return cmd
}
