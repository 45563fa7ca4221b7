// Package e2e starts real clustermail processes on loopback and talks to
// them with real protocol clients.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"clustermail/api"

	// The binary under test is built by `go build` in a subprocess, which
	// Go's test cache does not see: without these, a change to the server
	// alone would replay a cached result. Linked in, they make this test
	// binary, and so its cache key, change with the server's code.
	_ "clustermail/bench/dirscale"
	_ "clustermail/bench/smtpload"
	_ "clustermail/node"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "clustermail-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "clustermail")
	build := exec.Command("go", "build", "-o", binary, "../cmd/clustermail")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build clustermail:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePorts reserves n distinct loopback ports. Holding all listeners
// until every port is picked keeps them distinct.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

type node struct {
	t                       *testing.T
	name, dir               string
	gossip, raft, api, smtp string
	join                    []string
	expect                  int
	extra                   []string
	sub                     string // submission address, chosen at the first start that asks for one (see subAddr)

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

type testCluster struct {
	t     *testing.T
	nodes []*node
}

// newCluster starts n nodes that bootstrap together. freePorts cannot
// hold its ports until the nodes bind them, so under parallel tests another
// process may take one first: the cluster then starts again on new ports.
func newCluster(t *testing.T, n int, extra ...string) *testCluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c, lost := startCluster(t, n, extra)
		if !lost {
			return c
		}
		if attempt == 3 {
			t.Fatal("three cluster starts lost a port to another process")
		}
		t.Logf("a node lost a port to another process; starting the cluster again on new ports")
	}
}

func startCluster(t *testing.T, n int, extra []string) (*testCluster, bool) {
	t.Helper()
	ports := freePorts(t, 4*n)
	c := &testCluster{t: t}
	var gossip []string
	base := t.TempDir()
	for i := 0; i < n; i++ {
		p := ports[4*i : 4*i+4]
		nd := &node{t: t, name: "n" + strconv.Itoa(i+1), dir: filepath.Join(base, "n"+strconv.Itoa(i+1)),
			gossip: addr(p[0]), raft: addr(p[1]), api: addr(p[2]), smtp: addr(p[3]), expect: n, extra: extra}
		c.nodes = append(c.nodes, nd)
		gossip = append(gossip, nd.gossip)
	}
	for _, nd := range c.nodes {
		nd.join = gossip
		nd.start()
	}
	for _, nd := range c.nodes {
		if nd.portLost(10 * time.Second) {
			for _, x := range c.nodes {
				x.kill()
			}
			return nil, true
		}
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.kill()
		}
		if t.Failed() {
			for _, nd := range c.nodes {
				nd.dumpLog()
			}
		}
	})
	for _, nd := range c.nodes {
		nd.waitReady(60 * time.Second)
	}
	return c, false
}

// portLost reports whether the node exited, within d, because an address
// was in use; a node still running (or ready) returns false at once.
func (n *node) portLost(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		n.mu.Lock()
		done := n.done
		n.mu.Unlock()
		select {
		case <-done:
			b, _ := os.ReadFile(n.dir + ".log")
			return strings.Contains(string(b), "address already in use")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := n.client().Ready(ctx)
		cancel()
		if err == nil {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// subAddr in an extra flag stands for the node's own submission address
// (node.sub), so one flag list serves every node: "--submission-addr", subAddr.
const subAddr = "{submission}"

func addr(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }

func (n *node) start() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	args := []string{"server", "--name", n.name, "--data-dir", n.dir, "--gossip-addr", n.gossip, "--raft-addr", n.raft,
		"--api-addr", n.api, "--smtp-addr", n.smtp, "--join", strings.Join(n.join, ","), "--hostname", n.name + ".test",
		"--bootstrap-expect", strconv.Itoa(n.expect), "--log-level", "debug"}
	for _, a := range n.extra {
		if strings.Contains(a, subAddr) {
			if n.sub == "" {
				n.sub = addr(freePorts(n.t, 1)[0])
			}
			a = strings.ReplaceAll(a, subAddr, n.sub)
		}
		args = append(args, a)
	}
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		n.t.Fatal(err)
	}
	f, err := os.OpenFile(n.dir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	fmt.Fprintf(f, "==== start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.cmd, n.log, n.done = cmd, f, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); f.Close(); close(done) }(n.done)
}

func (n *node) signal(s syscall.Signal) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(s)
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// kill is a crash: SIGKILL, no goodbye.
func (n *node) kill() { n.signal(syscall.SIGKILL) }

func (n *node) client() *api.Client { return api.NewClient(n.api) }

func (n *node) waitReady(d time.Duration) {
	n.t.Helper()
	waitFor(n.t, d, n.name+" ready", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return n.client().Ready(ctx)
	})
}

func (n *node) dumpLog() {
	b, err := os.ReadFile(n.dir + ".log")
	if err != nil {
		return
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	n.t.Logf("---- last log lines of %s ----\n%s", n.name, strings.Join(lines, "\n"))
}

// waitFor polls cond until it returns nil or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s: %v", d, what, err)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// send delivers one message through a real SMTP client and returns the
// server's final reply code and text.
func send(addr, from string, to []string, body string) (int, string, error) {
	c, err := smtp.Dial(addr)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return 0, "", err
	}
	if err := c.Mail(from, nil); err != nil {
		return smtpCode(err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return smtpCode(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return smtpCode(err)
	}
	if _, err := io.WriteString(w, body); err != nil {
		return 0, "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return smtpCode(err)
	}
	_ = c.Quit()
	return 250, resp.StatusText, nil
}

func smtpCode(err error) (int, string, error) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code, se.Message, nil
	}
	return 0, "", err
}

func message(subject string) string {
	return "From: sender@client.test\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@client.test>\r\n\r\nbody of " + subject + "\r\n"
}

// subjects returns how many times each subject is in the mailbox.
func subjects(t *testing.T, c *api.Client, address string) (map[string]int, error) {
	msgs, err := c.Messages(ctx(t), address)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, m := range msgs {
		out[m.Subject]++
	}
	return out, nil
}

// waitVoters waits until the cluster seen through c has one leader and n
// live voters.
func waitVoters(t *testing.T, c *api.Client, n int, d time.Duration) {
	t.Helper()
	waitFor(t, d, fmt.Sprintf("%d voters and a leader", n), func() error {
		ms, err := c.Members(ctx(t))
		if err != nil {
			return err
		}
		leaders, voters := 0, 0
		for _, m := range ms {
			if m.RaftRole == "leader" {
				leaders++
			}
			if m.Suffrage == "voter" && m.GossipState == "alive" {
				voters++
			}
		}
		if leaders != 1 || voters != n {
			return fmt.Errorf("leaders=%d voters=%d: %+v", leaders, voters, ms)
		}
		return nil
	})
}
