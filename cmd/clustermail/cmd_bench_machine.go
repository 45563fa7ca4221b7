package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"clustermail/bench/machine"
)

func newBenchMachineCmd(opts *benchOptions) *cobra.Command {
	var o machine.Options
	var resultLine bool
	cmd := &cobra.Command{
		Use:   "machine",
		Short: "Measure this machine: fsync latency, thread wake-up round trip, CPU speed",
		Long: `Measure what bounds a mail server on this machine, so that benchmark
figures from different machines can be compared: a 4 KiB append followed by
fsync (p50, p99) in --dir, the round trip of a byte between two threads over
pipes (each side sleeps in read and is woken by the other's write, as in
perf bench sched pipe), and SHA-256 on one CPU. It takes a few seconds;
run it on a quiet machine. bench/compare.sh prints it above its table.

A slow fsync bounds a server that syncs every message (Postfix); a slow
wake-up bounds one that hands each message between many threads and
nodes (clustermail at a moderate pace, three nodes on one machine).`,
		Example: `  clustermail bench machine --dir /var/lib/clustermail`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := machine.Measure(o)
			if err != nil {
				return fmt.Errorf("bench machine: %w", err)
			}
			w := cmdOut(cmd)
			if opts.json {
				return printJSON(w, r)
			}
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
			fmt.Fprintf(w, "cpus       %d\n", r.CPUs)
			fmt.Fprintf(w, "fsync      4 KiB append + fsync: p50 %.2f ms  p99 %.2f ms\n", ms(r.FsyncP50), ms(r.FsyncP99))
			fmt.Fprintf(w, "wake-up    thread round trip over pipes: p50 %.1f µs\n", us(r.WakeRTT))
			fmt.Fprintf(w, "cpu        SHA-256 on one CPU: %.0f MB/s\n", r.HashMBps)
			if resultLine {
				fmt.Fprintf(w, "MACHINE cpus=%d fsync_p50_ms=%.2f fsync_p99_ms=%.2f wake_rtt_us=%.1f sha256_mbps=%.0f\n",
					r.CPUs, ms(r.FsyncP50), ms(r.FsyncP99), us(r.WakeRTT), r.HashMBps)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", "", "directory for the fsync test file: put it on the disk the data goes to (default the temp dir)")
	f.IntVar(&o.Syncs, "syncs", 500, "fsyncs to measure")
	f.IntVar(&o.Wakes, "wakes", 20000, "wake-up round trips to measure")
	f.BoolVar(&resultLine, "result-line", false, "also print one line 'MACHINE cpus=... fsync_p50_ms=...' for scripts")
	return cmd
}
