package faults

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"clustermail/api"
)

// The accounts written to: mailboxes on every node, two on n2.
var accounts = []account{
	{"alice@" + domain, "n1"},
	{"bob@" + domain, "n2"},
	{"carol@" + domain, "n3"},
	{"dave@" + domain, "n2"},
}

type scenario struct {
	t    *testing.T
	name string
	c    *cluster
	w    *writer
}

// begin starts a fresh cluster, creates the accounts, starts the writer and
// waits for steady traffic.
func begin(t *testing.T, name string, composeFiles ...string) *scenario {
	t.Helper()
	c := startCluster(t, composeFiles...)
	c.waitFor(30*time.Second, "the domain", func() error {
		ctx, cancel := actx()
		defer cancel()
		_, err := c.nodes[1].api.AddDomain(ctx, domain)
		if err != nil && strings.Contains(err.Error(), "exists") {
			return nil
		}
		return err
	})
	for i, a := range accounts {
		c.waitFor(30*time.Second, "account "+a.addr, func() error {
			ctx, cancel := actx()
			defer cancel()
			u, err := c.nodes[(i+1)%3].api.AddUser(ctx, api.UserAddRequest{Address: a.addr, Password: "faults password", Node: a.owner})
			if err != nil && strings.Contains(err.Error(), "exists") {
				return nil
			}
			if err == nil && u.Node != a.owner {
				t.Fatalf("%s placed on %s, asked for %s", a.addr, u.Node, a.owner)
			}
			return err
		})
	}
	// Each node resolves recipients from its own replica of the directory:
	// wait until every node has applied the new accounts, or a node still
	// behind answers 550 5.1.1 for an account that exists.
	c.waitFor(30*time.Second, "every node to know the accounts", func() error {
		for _, n := range c.nodes {
			for _, a := range accounts {
				ctx, cancel := actx()
				_, err := n.api.User(ctx, a.addr)
				cancel()
				if err != nil {
					return fmt.Errorf("%s: %v", n.name, err)
				}
			}
		}
		return nil
	})
	s := &scenario{t: t, name: name, c: c}
	s.w = startWriter(c, name, accounts)
	s.w.waitAcks(t, 40, time.Minute, "before the fault", nil)
	return s
}

// finish waits for traffic to flow again, stops the writer and checks.
func (s *scenario) finish() {
	t := s.t
	t.Helper()
	s.w.waitAcks(t, 40, 2*time.Minute, "after recovery", nil)
	s.w.stop()
	r := check(s.c, s.w)
	line := r.line(s.name)
	resultsMu.Lock()
	results = append(results, line)
	resultsMu.Unlock()
	fmt.Println(line)
	t.Log(line)
	if r.lost > 0 || r.dup > 0 || r.stray > 0 || r.undrained > 0 {
		t.Errorf("%s: lost=%d dup=%d stray=%d undrained=%d; node logs in %s", s.name, r.lost, r.dup, r.stray, r.undrained, s.c.logDir)
	}
	if r.r5 > 0 {
		t.Errorf("%s: %d messages refused with 5xx during a transient fault: a client bounces them (DESIGN: before the 250 the reply is a 4xx)", s.name, r.r5)
	}
	if r.acked < 100 {
		t.Errorf("%s: only %d messages acknowledged: too few to mean anything", s.name, r.acked)
	}
}

func owns(n *node) func(*attempt) bool {
	return func(a *attempt) bool {
		for _, r := range a.rcpts {
			for _, acct := range accounts {
				if acct.addr == r && acct.owner == n.name {
					return true
				}
			}
		}
		return false
	}
}

func via(n *node) func(*attempt) bool {
	return func(a *attempt) bool { return a.via == n.name }
}

// TestKillLeader: SIGKILL the leader; once another is elected and mail
// flows, SIGKILL that one too (one node of three left: no quorum, writes
// must be refused, not acknowledged), then start both again.
func TestKillLeader(t *testing.T) {
	s := begin(t, "kill-leader")
	c := s.c
	l1 := c.leader(nil)
	c.kill(l1)
	l2 := c.leader(l1)
	c.event("%s elected", l2.name)
	s.w.waitAcks(t, 40, time.Minute, "with "+l1.name+" dead", nil)

	c.kill(l2)
	last := c.others(l1, l2)[0]
	since := time.Now()
	c.waitFor(2*time.Minute, last.name+", alone, to answer", func() error {
		if s.w.sawFrom(last, since, func(a *attempt) bool { return true }) {
			return nil
		}
		return fmt.Errorf("no reply from %s yet", last.name)
	})
	c.event("%s alone: %s", last.name, s.w.stats(since))

	c.startNode(l1)
	c.startNode(l2)
	s.watchRestart(l1)
	c.waitHealthy(2 * time.Minute)
	c.event("healthy again, leader %s", c.leader(nil).name)
	s.finish()
}

// TestKillOwner: SIGKILL a node that owns mailboxes being written to (not
// the leader), write to them while it is dead, start it again.
func TestKillOwner(t *testing.T) {
	s := begin(t, "kill-owner")
	c := s.c
	l := c.leader(nil)
	owner := c.node("n2") // bob and dave
	if owner == l {
		owner = c.node("n3")
	}
	c.kill(owner)
	c.waitFor(30*time.Second, "the leader to see "+owner.name+" dead", func() error {
		st, err := c.gossipState(l, owner)
		if err == nil && st != "dead" {
			err = errors.New(st)
		}
		return err
	})
	c.event("%s dead for the leader's gossip", owner.name)
	s.w.waitAcks(t, 30, time.Minute, "for "+owner.name+"'s mailboxes while it is dead", owns(owner))
	c.startNode(owner)
	s.watchRestart(owner)
	c.waitHealthy(2 * time.Minute)
	c.event("healthy again")
	s.finish()
}

// TestPartitionNode: cut a follower off the network for longer than the
// failure detector's timeout, then reconnect it. Messages it acknowledged
// just before the cut must still be delivered (two holders, Raft queue).
func TestPartitionNode(t *testing.T) {
	buildProbe(t)
	s := begin(t, "partition-node")
	c := s.c
	l := c.leader(nil)
	f := c.others(l)[len(c.others(l))-1]
	cut := time.Now()
	c.disconnect(f)
	c.event("%d acknowledged by %s in the 2 s before the cut", s.w.ackedSince(cut.Add(-2*time.Second), func(a *attempt) bool {
		return a.via == f.name && a.end.Before(cut)
	}), f.name)
	probes := s.probeCutOff(f)
	c.waitFor(30*time.Second, "the leader to see "+f.name+" dead", func() error {
		st, err := c.gossipState(l, f)
		if err == nil && st != "dead" {
			err = errors.New(st)
		}
		return err
	})
	c.event("%s dead for the leader's gossip after %.1fs", f.name, time.Since(cut).Seconds())
	s.w.waitAcks(t, 40, time.Minute, "with "+f.name+" cut off", nil)
	probes()
	c.connect(f)
	c.waitHealthy(2 * time.Minute)
	c.event("healthy again")
	s.finish()
}

// TestPartitionLeader: cut the leader off. The majority elects another
// while the old one, alone, may still believe it leads; what it answers to
// SMTP meanwhile is checked like every other write. Then reconnect it.
func TestPartitionLeader(t *testing.T) {
	buildProbe(t)
	s := begin(t, "partition-leader")
	c := s.c
	old := c.leader(nil)
	c.disconnect(old)
	cut := time.Now()
	stopWatch := s.watchStatus(old)
	probes := s.probeCutOff(old)
	l := c.leader(old)
	c.event("majority elected %s after %.1fs", l.name, time.Since(cut).Seconds())
	s.w.waitAcks(t, 40, time.Minute, "with "+l.name+" leading", nil)
	probes()
	c.connect(old)
	stopWatch()
	c.waitHealthy(2 * time.Minute)
	c.event("healthy again, leader %s", c.leader(nil).name)
	s.finish()
}

// TestRollingRestart restarts every node in turn while traffic flows, the
// followers first and the leader last, waiting until the cluster is healthy
// after each: the upgrade procedure of README.md.
func TestRollingRestart(t *testing.T) {
	s := begin(t, "rolling-restart")
	c := s.c
	l := c.leader(nil)
	for _, n := range append(c.others(l), l) {
		start := time.Now()
		c.restart(n)
		c.waitHealthy(2 * time.Minute)
		c.event("%s back and the cluster healthy %.1fs after the restart began; leader %s", n.name, time.Since(start).Seconds(), c.leader(nil).name)
		s.w.waitAcks(t, 20, time.Minute, "after restarting "+n.name, nil)
	}
	s.finish()
}

// TestRollingUpgrade replaces every container in turn with a new one from
// the current image (what an upgrade does: docker-compose up -d --no-deps
// --force-recreate nX), followers first, waiting until healthy after each.
func TestRollingUpgrade(t *testing.T) {
	s := begin(t, "rolling-upgrade")
	c := s.c
	l := c.leader(nil)
	for _, n := range append(c.others(l), l) {
		start := time.Now()
		c.recreate(n)
		c.waitHealthy(2 * time.Minute)
		c.event("%s back and the cluster healthy %.1fs after the upgrade step began; leader %s", n.name, time.Since(start).Seconds(), c.leader(nil).name)
		s.w.waitAcks(t, 20, time.Minute, "after upgrading "+n.name, nil)
	}
	s.finish()
}

// TestDiskFull fills n3's data volume (a 64 MiB tmpfs) while traffic flows,
// keeps it full, frees it, and restarts n3 to see that what it wrote while
// full opens cleanly.
func TestDiskFull(t *testing.T) {
	buildProbe(t)
	s := begin(t, "disk-full", "faults/docker-compose.diskfull.yml")
	c := s.c
	n3 := c.node("n3")
	vol, err := docker(time.Minute, "inspect", "-f", `{{range .Mounts}}{{if eq .Destination "/data"}}{{.Name}}{{end}}{{end}}`, n3.id)
	vol = strings.TrimSpace(vol)
	c.must("n3's data volume", vol, err)
	holder := project + "-holder"
	out, err := docker(time.Minute, "run", "-d", "--name", holder, "--label", "clustermail-faults=probe", "--network", "none",
		"-v", vol+":/data", probeImage, "hold")
	c.must("start the volume holder", out, err)
	c.cleanup = append(c.cleanup, func() { docker(time.Minute, "rm", "-f", holder) })

	restarts := func() string {
		out, _ := docker(time.Minute, "inspect", "-f", "{{.RestartCount}}", n3.id)
		return strings.TrimSpace(out)
	}
	out, err = docker(2*time.Minute, "exec", holder, "/probe", "fill", "/data/faults-filler")
	c.must("fill n3's /data", out, err)
	full := time.Now()
	c.event("n3's /data is full: %s (n3 is %s, restarts %s)", strings.TrimSpace(out), c.health(n3), restarts())

	// What does n3 do about it? Not a deadline on the test: a node that
	// shows nothing is reported, and the checks below still run.
	err = poll(time.Minute, func() error {
		h := c.health(n3)
		if h != "healthy" || s.w.sawFrom(n3, full, func(a *attempt) bool { return a.result != acked }) {
			return nil
		}
		return fmt.Errorf("n3 still %s and answering 250", h)
	})
	if err != nil {
		c.event("n3 showed no sign of its full disk within a minute: %v", err)
	} else {
		c.event("n3 noticed after %.1fs: %s, restarts %s", time.Since(full).Seconds(), c.health(n3), restarts())
	}
	s.w.waitAcks(t, 60, 2*time.Minute, "with n3's disk full", nil)
	c.event("while full: n3 %s, restarts %s; n3's replies: %s", c.health(n3), restarts(), s.w.stats(full))

	out, err = docker(time.Minute, "exec", holder, "/probe", "free", "/data/faults-filler")
	c.must("free n3's /data", out, err)
	freed := time.Now()
	c.event("freed n3's /data")
	c.waitHealthy(3 * time.Minute)
	c.event("healthy again %.1fs after freeing (n3 restarts %s)", time.Since(freed).Seconds(), restarts())
	s.w.waitAcks(t, 20, time.Minute, "through n3 after freeing", via(n3))

	// Corruption check: n3 opens everything it wrote while full.
	c.restart(n3)
	c.waitHealthy(2 * time.Minute)
	c.event("n3 restarted cleanly on its data")

	lines := 0
	var sample []string
	for _, l := range strings.Split(c.nodeLog(n3), "\n") {
		if strings.Contains(l, "no space left") {
			lines++
			if len(sample) < 5 {
				sample = append(sample, l)
			}
		}
	}
	c.event("n3's log has %d lines about the full disk; first ones:\n%s", lines, strings.Join(sample, "\n"))
	s.finish()
}

// probeCutOff sends three messages through n's own network namespace, so
// they reach a node cut off from the compose network (the host cannot: its
// published ports go through that network). They are counted like the
// writer's. The returned function waits for them.
func (s *scenario) probeCutOff(n *node) (wait func()) {
	buildProbe(s.t)
	var other string
	var mine string
	for _, a := range accounts {
		if a.owner == n.name && mine == "" {
			mine = a.addr
		}
		if a.owner != n.name && other == "" {
			other = a.addr
		}
	}
	var wg sync.WaitGroup
	for _, rcpts := range [][]string{{mine}, {other}, {mine, other}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := s.w.inject(n.name+"(cut-off)", rcpts, func(msg string) (int, string, string, error) {
				out, err := s.c.probeIn(n, msg, 2*time.Minute, "smtp", "127.0.0.1:2525", sender, strings.Join(rcpts, ","))
				f := strings.SplitN(strings.TrimSpace(lastLine(out)), " ", 4)
				if err != nil || len(f) < 3 || f[0] != "REPLY" {
					return 0, "probe", "", fmt.Errorf("probe: %v %s", err, out)
				}
				code, _ := strconv.Atoi(f[1])
				text := ""
				if len(f) == 4 {
					text = f[3]
				}
				if code == 0 {
					return 0, f[2], "", errors.New(text)
				}
				return code, f[2], text, nil
			})
			if a != nil {
				s.c.event("through cut-off %s to %v: %s %d at %s: %s (%.1fs)", n.name, rcpts, a.result, a.code, a.stage, a.reply, a.end.Sub(a.start).Seconds())
			}
		}()
	}
	return func() {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Minute):
			s.t.Errorf("SMTP sessions with cut-off %s still open after 3 minutes", n.name)
		}
	}
}

// watchStatus records, from inside n's network namespace, how n's view of
// the cluster changes while it is cut off. The returned function stops it.
func (s *scenario) watchStatus(n *node) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		last := ""
		for {
			out, err := s.c.probeIn(n, "", 20*time.Second, "get", "http://127.0.0.1:8080/v1/cluster/status")
			view := "unreachable: " + firstLine(out, errOr(err))
			if i := strings.Index(out, "{"); err == nil && i >= 0 {
				var st api.Status
				if json.Unmarshal([]byte(out[i:]), &st) == nil {
					view = fmt.Sprintf("state %s, leader %q, term %d", st.State, st.Leader, st.Term)
				}
			}
			if view != last {
				s.c.event("%s's own view: %s", n.name, view)
				last = view
			}
			select {
			case <-done:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func errOr(err error) error {
	if err == nil {
		return errors.New("no answer")
	}
	return err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// watchRestart records what a node that just started serves: its Raft
// indexes, whether it says it is ready, and whether its replica of the
// directory has the scenario's domain yet. A node must not serve a stale
// directory as the truth (a missing domain means 554 5.7.1 at RCPT).
func (s *scenario) watchRestart(n *node) {
	c := s.c
	start := time.Now()
	last := ""
	_ = poll(20*time.Second, func() error {
		ctx, cancel := actx()
		defer cancel()
		st, err := n.api.Status(ctx)
		if err != nil {
			return err
		}
		doms, derr := n.api.Domains(ctx)
		hosted := derr == nil && len(doms) > 0
		ready := n.api.Ready(ctx) == nil
		view := fmt.Sprintf("leader %q commit %d applied %d last %d, ready %v, domain %s known %v",
			st.Leader, st.CommitIndex, st.AppliedIndex, st.LastLogIndex, ready, domain, hosted)
		if view != last {
			c.event("%s after start (+%.2fs): %s", n.name, time.Since(start).Seconds(), view)
			if last == "" && n.beforeKill != nil && st.LastLogIndex < n.beforeKill.LastLogIndex {
				c.t.Errorf("%s restarted with Raft log index %d, but had %d before SIGKILL: stored log entries were lost",
					n.name, st.LastLogIndex, n.beforeKill.LastLogIndex)
			}
			last = view
		}
		if !hosted || !ready || st.AppliedIndex < st.CommitIndex || st.CommitIndex == 0 {
			return errors.New("not caught up")
		}
		return nil
	})
}
