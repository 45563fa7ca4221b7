package faults

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"clustermail/api"
)

// Environment:
//
//	CLUSTERMAIL_FAULTS=1          run the suite (otherwise every test skips)
//	CLUSTERMAIL_FAULTS_BUILD=0    use the existing clustermail:dev image instead of running `make image`
//	CLUSTERMAIL_FAULTS_LOGS=DIR   where node logs go (default: $TMPDIR/clustermail-faults)
//	CLUSTERMAIL_FAULTS_KEEP=1     leave a failed test's cluster running for a look
//	CLUSTERMAIL_COMPOSE="docker compose"  the compose command (default docker-compose, else the v2 plugin)
const (
	project    = "clustermail-faults"
	image      = "clustermail:dev"
	probeImage = "clustermail-faults-probe:dev"
	domain     = "faults.test"
)

var (
	root       string   // the repository
	skipReason string   // set when the suite cannot or should not run
	composeCmd []string // docker-compose, or docker compose
	logRoot    string

	resultsMu sync.Mutex
	results   []string // RESULT lines, printed again at the end
)

func TestMain(m *testing.M) {
	flag.Parse()
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	root = filepath.Dir(wd)
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run()) // go test -list (make fuzz): no image build
	}
	skipReason, err = prepare()
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
	code := m.Run()
	if len(results) > 0 {
		fmt.Println("---- fault-injection results")
		for _, r := range results {
			fmt.Println(r)
		}
	}
	os.Exit(code)
}

// prepare decides whether the suite runs, finds the compose command and
// builds the image. A reason to skip is not an error; a failed build is.
func prepare() (skip string, err error) {
	if os.Getenv("CLUSTERMAIL_FAULTS") == "" {
		return "fault-injection suite: set CLUSTERMAIL_FAULTS=1 to run it (needs Docker and docker-compose; make test-faults)", nil
	}
	if out, err := run(20*time.Second, "", "docker", "version", "--format", "{{.Server.Version}}"); err != nil {
		return "fault-injection suite: no Docker engine reachable: " + firstLine(out, err), nil
	}
	switch c := os.Getenv("CLUSTERMAIL_COMPOSE"); {
	case c != "":
		composeCmd = strings.Fields(c)
	default:
		if _, err := exec.LookPath("docker-compose"); err == nil {
			composeCmd = []string{"docker-compose"}
		} else if _, err := run(20*time.Second, "", "docker", "compose", "version"); err == nil {
			composeCmd = []string{"docker", "compose"}
		} else {
			return "fault-injection suite: neither docker-compose nor `docker compose` found", nil
		}
	}
	logRoot = os.Getenv("CLUSTERMAIL_FAULTS_LOGS")
	if logRoot == "" {
		logRoot = filepath.Join(os.TempDir(), "clustermail-faults")
	}
	if os.Getenv("CLUSTERMAIL_FAULTS_BUILD") == "0" {
		if out, err := run(20*time.Second, "", "docker", "image", "inspect", image); err != nil {
			return "", fmt.Errorf("CLUSTERMAIL_FAULTS_BUILD=0 but no image %s (make image): %s", image, firstLine(out, err))
		}
		if _, err := os.Stat(filepath.Join(root, "deploy/compose-tls/cert.pem")); err != nil {
			return "", fmt.Errorf("CLUSTERMAIL_FAULTS_BUILD=0 but no compose TLS pair (make compose-tls): %v", err)
		}
		return "", nil
	}
	start := time.Now()
	if out, err := run(10*time.Minute, root, "make", "image", "compose-tls"); err != nil {
		return "", fmt.Errorf("make image compose-tls: %v\n%s", err, out)
	}
	fmt.Printf("faults: built %s in %v\n", image, time.Since(start).Round(time.Second))
	return "", nil
}

// run runs a command and returns its combined output.
func run(timeout time.Duration, dir, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: timed out after %v", name, strings.Join(args, " "), timeout)
	}
	return out.String(), err
}

func firstLine(out string, err error) string {
	if s := strings.TrimSpace(out); s != "" {
		return strings.SplitN(s, "\n", 2)[0]
	}
	return err.Error()
}

// node is one compose service.
type node struct {
	name string
	id   string // container id
	smtp string // published SMTP address on the host
	api  *api.Client

	beforeKill *api.Status // Raft status just before the last SIGKILL
	oldLogs    string      // logs of containers replaced by recreate
}

// cluster is the compose project of one test.
type cluster struct {
	t       *testing.T
	files   []string // compose files after docker-compose.yml
	nodes   []*node
	network string
	start   time.Time
	logDir  string

	mu      sync.Mutex
	events  []string
	cleanup []func()
}

// startCluster brings up a fresh three-node cluster (down -v first, so no
// state survives from an earlier test) and waits until it is healthy.
func startCluster(t *testing.T, extraFiles ...string) *cluster {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	c := &cluster{t: t, files: append([]string{"faults/docker-compose.faults.yml"}, extraFiles...), start: time.Now(),
		logDir: filepath.Join(logRoot, t.Name())}
	c.removeProbes()
	if out, err := c.compose(2*time.Minute, "down", "-v", "--remove-orphans"); err != nil {
		t.Fatalf("docker-compose down (leftovers of an earlier run): %v\n%s", err, out)
	}
	if out, err := c.compose(3*time.Minute, "up", "-d"); err != nil {
		c.compose(time.Minute, "down", "-v")
		t.Fatalf("docker-compose up: %v\n%s\n(a port already allocated? The suite publishes the same ports as `make compose-up`: run `make compose-down` first)", err, out)
	}
	t.Cleanup(c.stop)
	for _, name := range []string{"n1", "n2", "n3"} {
		n := &node{name: name}
		out, err := c.compose(time.Minute, "ps", "-q", name)
		if err != nil || lastLine(out) == "" {
			t.Fatalf("container of %s: %v %s", name, err, out)
		}
		n.id = lastLine(out)
		n.smtp = c.port(name, "2525")
		n.api = api.NewClient("http://" + c.port(name, "8080"))
		c.nodes = append(c.nodes, n)
	}
	out, err := docker(time.Minute, "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", c.nodes[0].id)
	if err != nil || len(strings.Fields(out)) == 0 {
		t.Fatalf("network of n1: %v %s", err, out)
	}
	c.network = strings.Fields(out)[0]
	c.waitHealthy(2 * time.Minute)
	c.event("cluster up and healthy (%s), leader %s", c.network, c.leader(nil).name)
	return c
}

// port returns the host address published for a node's container port.
func (c *cluster) port(name, port string) string {
	out, err := c.compose(time.Minute, "port", name, port)
	addr := lastLine(out) // compose may print warnings first
	if err != nil || addr == "" {
		c.t.Fatalf("published port of %s:%s: %v %s", name, port, err, out)
	}
	return strings.Replace(addr, "0.0.0.0:", "127.0.0.1:", 1)
}

func (c *cluster) compose(timeout time.Duration, args ...string) (string, error) {
	full := append([]string{}, composeCmd[1:]...)
	full = append(full, "-p", project, "-f", "docker-compose.yml")
	for _, f := range c.files {
		full = append(full, "-f", f)
	}
	return run(timeout, root, composeCmd[0], append(full, args...)...)
}

func docker(timeout time.Duration, args ...string) (string, error) {
	return run(timeout, "", "docker", args...)
}

// stop saves every node's log, then removes the project with its volumes.
func (c *cluster) stop() {
	c.saveLogs()
	if c.t.Failed() {
		for _, n := range c.nodes {
			c.t.Logf("---- %s: last warnings and errors (whole log in %s) ----\n%s", n.name, c.logDir, tail(notInfo(c.nodeLog(n)), 40))
		}
		if os.Getenv("CLUSTERMAIL_FAULTS_KEEP") != "" {
			c.t.Logf("CLUSTERMAIL_FAULTS_KEEP: the cluster is left running (%s -p %s ...)", strings.Join(composeCmd, " "), project)
			return
		}
	}
	for i := len(c.cleanup) - 1; i >= 0; i-- {
		c.cleanup[i]()
	}
	c.removeProbes()
	if out, err := c.compose(2*time.Minute, "down", "-v", "--remove-orphans"); err != nil {
		c.t.Errorf("docker-compose down: %v\n%s", err, out)
	}
}

// removeProbes removes helper containers left by this project's tests.
func (c *cluster) removeProbes() {
	out, _ := docker(time.Minute, "ps", "-aq", "--filter", "label=clustermail-faults=probe")
	if ids := strings.Fields(out); len(ids) > 0 {
		docker(time.Minute, append([]string{"rm", "-f"}, ids...)...)
	}
}

// nodeLog is a node's log, across restarts and replaced containers.
func (c *cluster) nodeLog(n *node) string { return n.oldLogs + c.containerLog(n.id) }

func (c *cluster) containerLog(id string) string {
	out, _ := docker(time.Minute, "logs", "--timestamps", id)
	return out
}

func (c *cluster) saveLogs() {
	if err := os.MkdirAll(c.logDir, 0o755); err != nil {
		c.t.Logf("save logs: %v", err)
		return
	}
	for _, n := range c.nodes {
		_ = os.WriteFile(filepath.Join(c.logDir, n.name+".log"), []byte(c.nodeLog(n)), 0o644)
	}
	c.mu.Lock()
	ev := strings.Join(c.events, "\n") + "\n"
	c.mu.Unlock()
	_ = os.WriteFile(filepath.Join(c.logDir, "events.log"), []byte(ev), 0o644)
}

// notInfo drops the INFO lines of a node's log (one per message queued and
// delivered), which would bury the rest.
func notInfo(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, "level=INFO") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// event logs a step of the scenario with the time since the cluster came up.
func (c *cluster) event(format string, args ...any) {
	line := fmt.Sprintf("%7.1fs  %s", time.Since(c.start).Seconds(), fmt.Sprintf(format, args...))
	c.mu.Lock()
	c.events = append(c.events, line)
	c.mu.Unlock()
	c.t.Log(line)
}

func (c *cluster) node(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node %q", name)
	return nil
}

func (c *cluster) others(ex ...*node) []*node {
	var out []*node
	for _, n := range c.nodes {
		skip := false
		for _, e := range ex {
			skip = skip || e == n
		}
		if !skip {
			out = append(out, n)
		}
	}
	return out
}

// --- faults ---

func (c *cluster) must(what string, out string, err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatalf("%s: %v\n%s", what, err, out)
	}
}

// kill is a crash: SIGKILL, no goodbye.
// The node's Raft indexes just before the kill are kept: a restart must
// find at least that much of the log (it was synced when stored).
func (c *cluster) kill(n *node) {
	c.t.Helper()
	st, serr := c.status(n)
	out, err := docker(time.Minute, "kill", n.id)
	c.must("docker kill "+n.name, out, err)
	if serr == nil {
		n.beforeKill = &st
		c.event("killed %s (SIGKILL); it had commit %d, applied %d, last log index %d", n.name, st.CommitIndex, st.AppliedIndex, st.LastLogIndex)
	} else {
		c.event("killed %s (SIGKILL)", n.name)
	}
}

// startNode starts a stopped or killed node again.
func (c *cluster) startNode(n *node) {
	c.t.Helper()
	out, err := c.compose(2*time.Minute, "start", n.name)
	c.must("docker-compose start "+n.name, out, err)
	c.event("started %s", n.name)
}

// restart stops a node with its stop signal (SIGINT: it stays a voter) and
// starts it again, as an operator does for an upgrade.
func (c *cluster) restart(n *node) {
	c.t.Helper()
	out, err := c.compose(2*time.Minute, "restart", n.name)
	c.must("docker-compose restart "+n.name, out, err)
	c.event("restarted %s (docker-compose restart: SIGINT, start)", n.name)
}

// recreate replaces a node's container with a new one from the current
// image, on the same volume: the upgrade step. The old container gets its
// stop signal (SIGINT: it stays a voter).
func (c *cluster) recreate(n *node) {
	c.t.Helper()
	old, logs := n.id, c.containerLog(n.id)
	out, err := c.compose(3*time.Minute, "up", "-d", "--no-deps", "--force-recreate", n.name)
	c.must("docker-compose up --force-recreate "+n.name, out, err)
	// The old container is gone with its log, but for the last lines it
	// wrote while stopping; what was read above is kept.
	n.oldLogs += logs + "==== container replaced\n"
	out, err = c.compose(time.Minute, "ps", "-q", n.name)
	c.must("container of "+n.name, out, err)
	n.id = lastLine(out)
	c.event("recreated %s (docker-compose up -d --no-deps --force-recreate): container %.12s -> %.12s", n.name, old, n.id)
}

// disconnect cuts a node off the compose network: no gossip, no Raft, no
// body replication, and its published ports stop answering too.
func (c *cluster) disconnect(n *node) {
	c.t.Helper()
	out, err := docker(time.Minute, "network", "disconnect", c.network, n.id)
	c.must("docker network disconnect "+n.name, out, err)
	c.event("cut %s off the network", n.name)
}

// connect puts it back under its service name, which the others dial.
func (c *cluster) connect(n *node) {
	c.t.Helper()
	out, err := docker(time.Minute, "network", "connect", "--alias", n.name, c.network, n.id)
	c.must("docker network connect "+n.name, out, err)
	c.event("reconnected %s", n.name)
}

// health is Docker's view of a node: healthy, unhealthy, starting, or the
// container's state when it is not running.
func (c *cluster) health(n *node) string {
	out, err := docker(time.Minute, "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", n.id)
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(out)
	if len(f) == 2 && f[0] == "running" {
		return f[1]
	}
	if len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

// --- conditions ---

func actx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

func (c *cluster) status(n *node) (api.Status, error) {
	ctx, cancel := actx()
	defer cancel()
	return n.api.Status(ctx)
}

// waitFor polls cond until it returns nil, and fails the test at the deadline.
func (c *cluster) waitFor(d time.Duration, what string, cond func() error) {
	c.t.Helper()
	if err := poll(d, cond); err != nil {
		c.t.Fatalf("timed out after %v waiting for %s: %v", d, what, err)
	}
}

func poll(d time.Duration, cond func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// leaderOf returns the leader that a majority of the given nodes agree on,
// each answering for itself.
func (c *cluster) leaderAmong(nodes []*node, exclude *node) (*node, error) {
	votes := map[string]int{}
	var errs []string
	for _, n := range nodes {
		s, err := c.status(n)
		if err != nil {
			errs = append(errs, n.name+": "+err.Error())
			continue
		}
		if s.Leader != "" {
			votes[s.Leader]++
		}
	}
	for name, v := range votes {
		if v*2 > len(c.nodes) && (exclude == nil || name != exclude.name) {
			return c.node(name), nil
		}
	}
	return nil, fmt.Errorf("no agreed leader: votes %v %s", votes, strings.Join(errs, "; "))
}

// leader waits for a leader other than exclude that a majority agrees on.
func (c *cluster) leader(exclude *node) *node {
	c.t.Helper()
	var l *node
	c.waitFor(30*time.Second, "a leader", func() error {
		var err error
		l, err = c.leaderAmong(c.others(exclude), exclude)
		return err
	})
	return l
}

// waitHealthy waits until every node is healthy for Docker, ready for the
// API, agrees on one leader with three voters, and sees the others alive.
func (c *cluster) waitHealthy(d time.Duration) {
	c.t.Helper()
	c.waitFor(d, "all three nodes healthy", c.healthy)
}

func (c *cluster) healthy() error {
	leaders := map[string]bool{}
	for _, n := range c.nodes {
		if h := c.health(n); h != "healthy" {
			return fmt.Errorf("%s is %s", n.name, h)
		}
		ctx, cancel := actx()
		err := n.api.Ready(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s not ready: %v", n.name, err)
		}
		s, err := c.status(n)
		if err != nil {
			return err
		}
		if s.Leader == "" || len(s.Voters) != 3 {
			return fmt.Errorf("%s: leader %q, voters %v", n.name, s.Leader, s.Voters)
		}
		leaders[s.Leader] = true
		ctx, cancel = actx()
		ms, err := n.api.Members(ctx)
		cancel()
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.GossipState != "alive" {
				return fmt.Errorf("%s sees %s %s", n.name, m.Name, m.GossipState)
			}
		}
	}
	if len(leaders) != 1 {
		return fmt.Errorf("nodes disagree on the leader: %v", keys(leaders))
	}
	return nil
}

// gossipState is what observer's gossip says about n.
func (c *cluster) gossipState(observer, n *node) (string, error) {
	ctx, cancel := actx()
	defer cancel()
	ms, err := observer.api.Members(ctx)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if m.Name == n.name {
			return m.GossipState, nil
		}
	}
	return "", fmt.Errorf("%s does not list %s", observer.name, n.name)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// --- the helper image (faults/probe) ---

var probeOnce struct {
	sync.Once
	err error
}

// buildProbe builds the helper image once per run.
func buildProbe(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	probeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "clustermail-faults-probe-")
		if err != nil {
			probeOnce.err = err
			return
		}
		defer os.RemoveAll(dir)
		build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, "probe"), "./faults/probe")
		build.Dir = root
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			probeOnce.err = fmt.Errorf("go build ./faults/probe: %v\n%s", err, out)
			return
		}
		df := "FROM scratch\nCOPY probe /probe\nUSER 65532:65532\nLABEL clustermail-faults=probe-image\nENTRYPOINT [\"/probe\"]\n"
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
			probeOnce.err = err
			return
		}
		if out, err := docker(5*time.Minute, "build", "--pull=false", "-q", "-t", probeImage, dir); err != nil {
			probeOnce.err = fmt.Errorf("docker build %s: %v\n%s", probeImage, err, out)
		}
	})
	if probeOnce.err != nil {
		t.Fatal(probeOnce.err)
	}
}

// probeIn runs the helper in n's network namespace, so it reaches the node
// on 127.0.0.1 whatever the compose network does.
func (c *cluster) probeIn(n *node, stdin string, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := append([]string{"run", "--rm", "-i", "--label", "clustermail-faults=probe", "--network", "container:" + n.id, probeImage}, args...)
	cmd := exec.CommandContext(ctx, "docker", full...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = errors.New("timed out")
	}
	return string(out), err
}

func context30() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}
