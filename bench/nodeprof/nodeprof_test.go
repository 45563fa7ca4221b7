package nodeprof

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"clustermail/api"
	"clustermail/bench/smtpload"
	"clustermail/node"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestProfileNodes(t *testing.T) {
	out := os.Getenv("CLUSTERMAIL_PROFILE")
	if out == "" {
		t.Skip("set CLUSTERMAIL_PROFILE=FILE to profile nodes under load")
	}
	nodes, msgs := envInt("PROFILE_NODES", 1), envInt("PROFILE_MSGS", 10000)
	size, conc := envInt("PROFILE_SIZE", 1024), envInt("PROFILE_CONC", 10)
	dir := t.TempDir()

	type addrs struct{ gossip, raft, api, smtp string }
	var as []addrs
	var join []string
	for i := 0; i < nodes; i++ {
		a := addrs{freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)}
		as = append(as, a)
		join = append(join, a.gossip)
	}
	logf, err := os.Create(filepath.Join(dir, "nodes.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	var started []*node.Node
	defer func() {
		for _, n := range started {
			n.Stop()
			<-n.Done()
		}
	}()
	for i, a := range as {
		name := "n" + strconv.Itoa(i+1)
		cfg := node.Config{Name: name, DataDir: filepath.Join(dir, name), GossipAddr: a.gossip, RaftAddr: a.raft,
			APIAddr: a.api, SMTPAddr: a.smtp, BootstrapExpect: nodes, Hostname: name + ".bench.test",
			DeadServerGrace: 24 * time.Hour, OutboundPort: 25, RetrySchedule: "1m,5m,15m,30m,1h",
			DelayWarning: 4 * time.Hour, QueueLifetime: 120 * time.Hour, ReassignAfter: time.Minute,
			MaxMessageBytes: 25 << 20, MaxRecipients: 100, MaxLineLength: 1000, SMTPTimeout: 5 * time.Minute,
			MaxConnections: 1000, DeliveryWorkers: 8, RaftSnapshotThreshold: 8192, RaftTrailingLogs: 10240,
			RaftSnapshotInterval: 2 * time.Minute, LogFormat: "text", LogLevel: "info"}
		if nodes > 1 {
			cfg.Join = join
		}
		lg := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", name)
		n, err := node.Start(cfg, lg)
		if err != nil {
			t.Fatal(err)
		}
		started = append(started, n)
	}
	ctx := context.Background()
	for _, a := range as {
		c := api.NewClient(a.api)
		deadline := time.Now().Add(60 * time.Second)
		for c.Ready(ctx) != nil {
			if time.Now().After(deadline) {
				t.Fatalf("node at %s not ready", a.api)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	c := api.NewClient(as[0].api)
	if _, err := c.AddDomain(ctx, "bench.test"); err != nil {
		t.Fatal(err)
	}
	owner := "n1"
	if nodes > 1 {
		owner = "n2" // the accepting node (n1) is not the owner, the common case
	}
	if _, err := c.AddUser(ctx, api.UserAddRequest{Address: "user@bench.test", Password: "bench-password", Node: owner}); err != nil {
		t.Fatal(err)
	}
	load := func(n int) {
		if src, err := exec.LookPath("/usr/sbin/smtp-source"); err == nil {
			cmd := exec.Command(src, "-4", "-s", strconv.Itoa(conc), "-m", strconv.Itoa(n), "-l", strconv.Itoa(size),
				"-M", "client.test", "-f", "bench@client.test", "-t", "user@bench.test", as[0].smtp)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("smtp-source: %v: %s", err, b)
			}
			return
		}
		t.Log("no /usr/sbin/smtp-source: the in-process generator's cost is in the profile")
		res, err := smtpload.Run(ctx, smtpload.Config{Targets: []string{as[0].smtp}, Sessions: conc, Messages: n, Size: size,
			From: "bench@client.test", Rcpts: []string{"user@bench.test"}})
		if err != nil || res.Accepted != n {
			t.Fatalf("load: %v, %d of %d accepted", err, res.Accepted, n)
		}
	}
	counter := smtpload.MailboxCounter(c, []string{"user@bench.test"})
	waitDelivered := func(want int64) {
		deadline := time.Now().Add(10 * time.Minute)
		for {
			n, err := counter.Count(ctx)
			if err == nil && n >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("delivered %d of %d: %v", n, want, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	load(50) // warm-up
	waitDelivered(50)

	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	load(msgs)
	accepted := time.Since(start)
	waitDelivered(int64(50 + msgs))
	delivered := time.Since(start)
	pprof.StopCPUProfile()
	t.Logf("%d nodes, %d messages of %d bytes, %d sessions: accepted in %s (%.0f msgs/s), delivered in %s (%.0f msgs/s); profile in %s",
		nodes, msgs, size, conc, accepted.Round(time.Millisecond), float64(msgs)/accepted.Seconds(),
		delivered.Round(time.Millisecond), float64(msgs)/delivered.Seconds(), out)
	fmt.Fprintf(os.Stderr, "go tool pprof -top %s\n", out)
}
