package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"clustermail/api"
)

// newQueueCmd returns "clustermail queue": the replicated delivery queue.
func newQueueCmd() *cobra.Command {
	opts := &apiOptions{}
	cmd := newGroupCmd("queue", "Inspect and act on the delivery queue", opts)
	var all bool
	retry := &cobra.Command{
		Use:     "retry ID... | --all",
		Short:   "Try delivering queued messages now instead of waiting for their next attempt",
		Example: "  clustermail queue retry 01M8JT0AW5FA9XAEGMDM50WHZ3\n  clustermail queue retry --all",
		RunE: opts.runE(func(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return fmt.Errorf("queue retry: give queue ids or --all\nusage: %s", cmd.UseLine())
			}
			if err := c.QueueRetry(ctx, all, args...); err != nil {
				return opError("queue retry", strings.Join(args, " "), err)
			}
			if !opts.json {
				fmt.Fprintln(cmdOut(cmd), "retry scheduled now")
			}
			return nil
		}),
	}
	retry.Flags().BoolVar(&all, "all", false, "every queued message")
	cmd.AddCommand(
		&cobra.Command{
			Use:     "list",
			Aliases: []string{"ls"},
			Short:   "List queued messages: id, age, sender, pending recipients, next attempt, nodes",
			Args:    usageArgs(cobra.NoArgs),
			RunE:    opts.runE(opts.queueList),
		},
		&cobra.Command{
			Use:   "show ID",
			Short: "Show every recipient of a queued message: state, attempts, last reply, holders",
			Args:  usageArgs(cobra.ExactArgs(1)),
			RunE:  opts.runE(opts.queueShow),
		},
		retry,
		&cobra.Command{
			Use:     "delete ID",
			Aliases: []string{"rm"},
			Short:   "Drop a queued message without telling its sender",
			Args:    usageArgs(cobra.ExactArgs(1)),
			RunE: opts.runE(func(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
				if err := c.QueueDelete(ctx, args[0]); err != nil {
					return opError("queue delete", args[0], err)
				}
				if !opts.json {
					fmt.Fprintf(cmdOut(cmd), "deleted %s\n", args[0])
				}
				return nil
			}),
		},
		&cobra.Command{
			Use:   "bounce ID",
			Short: "Give up on a queued message: its pending recipients fail and the sender gets a bounce",
			Args:  usageArgs(cobra.ExactArgs(1)),
			RunE: opts.runE(func(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
				if err := c.QueueBounce(ctx, args[0]); err != nil {
					return opError("queue bounce", args[0], err)
				}
				if !opts.json {
					fmt.Fprintf(cmdOut(cmd), "bounced %s\n", args[0])
				}
				return nil
			}),
		},
	)
	return cmd
}

func (o *apiOptions) queueList(ctx context.Context, c *api.Client, cmd *cobra.Command, _ []string) error {
	q, err := c.Queue(ctx)
	if err != nil {
		return opError("queue list", "", err)
	}
	if o.json {
		return printJSON(cmdOut(cmd), q)
	}
	if len(q) == 0 {
		_, err := fmt.Fprintln(cmdOut(cmd), "the queue is empty")
		return err
	}
	t := newTable(cmdOut(cmd), "id", "age", "from", "pending", "next attempt", "nodes")
	for _, e := range q {
		from := e.From
		if from == "" {
			from = "<>"
		}
		t.row(e.ID, age(time.Since(e.Created)), truncate(from, 40), fmt.Sprintf("%d/%d", e.Pending, e.Recipients),
			nextAttempt(e.NextAttempt), strings.Join(e.Nodes, ","))
	}
	return t.flush()
}

func (o *apiOptions) queueShow(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string) error {
	e, err := c.QueueEntry(ctx, args[0])
	if err != nil {
		return opError("queue show", args[0], err)
	}
	if o.json {
		return printJSON(cmdOut(cmd), e)
	}
	from := e.From
	if from == "" {
		from = "<> (a delivery notice)"
	}
	w := cmdOut(cmd)
	if err := printKV(w, []kv{{"id", e.ID}, {"from", from}, {"queued", formatTime(e.Created) + " (" + age(time.Since(e.Created)) + " ago)"},
		{"size", formatSize(e.Size)}, {"accepted by", e.Node}, {"holders", strings.Join(e.Holders, ", ")},
		{"delay notice sent", strconv.FormatBool(e.DelayNotified)}}); err != nil {
		return err
	}
	fmt.Fprintln(w)
	t := newTable(w, "recipient", "state", "node", "attempts", "next attempt", "last reply")
	for _, r := range e.Recipients {
		addr := r.Addr
		if r.Orig != "" {
			addr += " (via " + r.Orig + ")"
		}
		next := "-"
		if r.State == "pending" {
			next = nextAttempt(r.NextAttempt)
		}
		t.row(addr, r.State, r.Node, strconv.Itoa(r.Attempts), next, truncate(r.LastReply, 60))
	}
	return t.flush()
}

// age renders a duration the way an operator reads a queue: 45s, 12m, 3h, 2d.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}

func nextAttempt(t time.Time) string {
	d := time.Until(t)
	if t.IsZero() || d <= 0 {
		return "now"
	}
	return "in " + age(d)
}
