// Package dirscale measures how clustermail behaves with a large
// directory: account creation through the admin API, RCPT lookups over
// SMTP, Raft snapshot size and time, and how long nodes take to catch up
// from a snapshot.
//
// The public API creates one account per Raft command, and the proposer
// hashes each password with argon2id (19 MiB, 2 passes) first, so it
// cannot create a million accounts in reasonable time (it is measured,
// and the time for N extrapolated). The large directory is therefore
// built the one other public way state enters a cluster: a snapshot
// restore. The bench saves the cluster's snapshot, loads it into a
// private state machine (raftstore.FSM with the directory's own command
// handlers), applies N account-add commands to it exactly as a node
// applies its Raft log (each the encoding of what directory.AddAccount
// proposes, all with one password hash), and restores the result into the
// cluster through POST /v1/cluster/snapshot/restore. This replaces the
// cluster's replicated state (directory and queue) with that state plus
// the accounts: run it on a test cluster with an empty queue only.
package dirscale

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"clustermail/api"
	"clustermail/backup"
	"clustermail/directory"
	"clustermail/queue"
	"clustermail/raftstore"
)

// Address is the i-th bulk account of domain.
func Address(i int, domain string) string { return fmt.Sprintf("u%07d@%s", i, domain) }

// APIAccounts creates n accounts named api-PREFIX-i@domain through the
// admin API with conc concurrent requests and returns how long it took.
func APIAccounts(ctx context.Context, c *api.Client, domain, prefix string, n, conc int) (time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	start := time.Now()
	for w := 0; w < max(conc, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				addr := fmt.Sprintf("api-%s-%d@%s", prefix, i, domain)
				if _, err := c.AddUser(ctx, api.UserAddRequest{Address: addr, Password: "bench-password-" + prefix}); err != nil {
					errs <- fmt.Errorf("add %s: %w", addr, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return time.Since(start), <-errs
}

// capture is a directory.Applier that keeps the encoded command.
type capture struct{ cmd []byte }

func (c *capture) Apply(_ context.Context, cmd []byte) error { c.cmd = cmd; return nil }

// Built is a snapshot file made by Build.
type Built struct {
	File       string        // the snapshot file, ready for RestoreSnapshot
	FileBytes  int64         // its size
	Accounts   int           // accounts added
	ApplyTime  time.Duration // applying the account commands to the private FSM
	PersistDur time.Duration // writing the FSM's snapshot
	Index      uint64        // the FSM's applied index
}

// Build saves the cluster's current snapshot through c, adds n accounts
// u0000000@domain ... to it (owners placed by directory.Place over nodes,
// as the API would), and writes a snapshot file of the result in dir.
func Build(ctx context.Context, c *api.Client, domain string, n int, nodes []string, dir string) (Built, error) {
	var out Built
	cur := filepath.Join(dir, "current.snapshot")
	f, err := os.Create(cur)
	if err != nil {
		return out, err
	}
	_, err = c.SaveSnapshot(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return out, fmt.Errorf("save the cluster's snapshot: %w", err)
	}

	fsm, err := raftstore.OpenFSM(filepath.Join(dir, "state"), raftstore.FSMOptions{})
	if err != nil {
		return out, err
	}
	defer fsm.Close()
	directory.Register(fsm)
	queue.New(fsm, nil).Register(fsm)
	cur0, err := restoreFile(fsm, cur)
	if err != nil {
		return out, err
	}
	if _, ok, err := directory.New(fsm, nil).Domain(domain); err != nil || !ok {
		return out, fmt.Errorf("domain %s is not in the cluster's state (add it first): %v", domain, err)
	}

	// One real proposal as the template: its type byte and its hash.
	cp := &capture{}
	if _, err := directory.New(fsm, cp).AddAccount(ctx, directory.NewAccount{Address: Address(0, domain), Password: "bench-password", Node: nodes[0]}); err != nil {
		return out, fmt.Errorf("template account: %w", err)
	}
	const ridLen = 8 // raftstore's request id after the type byte
	var tmpl directory.Account
	if err := json.Unmarshal(cp.cmd[1+ridLen:], &tmpl); err != nil {
		return out, fmt.Errorf("decode the template command: %w", err)
	}
	index := fsm.AppliedIndex()
	start := time.Now()
	const batch = 1024
	logs := make([]*raft.Log, 0, batch)
	now := time.Now().UTC()
	for i := 0; i < n; i++ {
		addr := Address(i, domain)
		a := directory.Account{Address: addr, Hash: tmpl.Hash, Node: directory.Place(addr, nodes), Created: now}
		payload, err := json.Marshal(a)
		if err != nil {
			return out, err
		}
		data := make([]byte, 1+ridLen, 1+ridLen+len(payload))
		data[0] = cp.cmd[0]
		_, _ = rand.Read(data[1 : 1+ridLen])
		index++
		logs = append(logs, &raft.Log{Index: index, Term: cur0.Term, Type: raft.LogCommand, Data: append(data, payload...)})
		if len(logs) == batch || i == n-1 {
			for k, r := range fsm.ApplyBatch(logs) {
				if r != nil {
					return out, fmt.Errorf("apply account %d: %v", logs[k].Index, r)
				}
			}
			logs = logs[:0]
		}
		if i%100000 == 0 && ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	out.ApplyTime, out.Accounts, out.Index = time.Since(start), n, fsm.AppliedIndex()

	start = time.Now()
	data := filepath.Join(dir, "state.data")
	snap, err := fsm.Snapshot()
	if err != nil {
		return out, err
	}
	sink, err := newFileSink(data)
	if err != nil {
		return out, err
	}
	err = snap.Persist(sink)
	snap.Release()
	if err != nil {
		return out, err
	}
	out.PersistDur = time.Since(start)
	st, err := os.Stat(data)
	if err != nil {
		return out, err
	}
	h := backup.SnapshotHeader{Index: out.Index, Term: cur0.Term, RaftVersion: cur0.RaftVersion, Size: st.Size(),
		Created: time.Now().UTC(), Node: "bench-directory"}
	out.File = filepath.Join(dir, "bulk.snapshot")
	if err := writeSnapshotFile(out.File, h, data); err != nil {
		return out, err
	}
	os.Remove(data)
	os.Remove(cur)
	if st, err := os.Stat(out.File); err == nil {
		out.FileBytes = st.Size()
	}
	return out, nil
}

func restoreFile(fsm *raftstore.FSM, path string) (backup.SnapshotHeader, error) {
	f, err := os.Open(path)
	if err != nil {
		return backup.SnapshotHeader{}, err
	}
	defer f.Close()
	sr, err := backup.ReadSnapshot(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return backup.SnapshotHeader{}, err
	}
	return sr.Header, fsm.Restore(io.NopCloser(sr))
}

func writeSnapshotFile(path string, h backup.SnapshotHeader, dataPath string) error {
	d, err := os.Open(dataPath)
	if err != nil {
		return err
	}
	defer d.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if _, err := backup.WriteSnapshot(bw, h, bufio.NewReaderSize(d, 1<<20)); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// fileSink is a raft.SnapshotSink writing to a file.
type fileSink struct {
	f  *os.File
	bw *bufio.Writer
}

func newFileSink(path string) (*fileSink, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &fileSink{f: f, bw: bufio.NewWriterSize(f, 1<<20)}, nil
}

func (s *fileSink) Write(p []byte) (int, error) { return s.bw.Write(p) }
func (s *fileSink) ID() string                  { return "bench" }
func (s *fileSink) Cancel() error               { return s.f.Close() }
func (s *fileSink) Close() error {
	if err := s.bw.Flush(); err != nil {
		s.f.Close()
		return err
	}
	return s.f.Close()
}

// Restore uploads a snapshot file through c and returns how long the
// restore took (the leader's answer comes once the followers have it).
func Restore(ctx context.Context, c *api.Client, path string) (time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := c.RestoreSnapshot(ctx, f, st.Size()); err != nil {
		return 0, fmt.Errorf("restore: %w", err)
	}
	return time.Since(start), nil
}

// CaughtUp waits until every node answers ready with an applied index at
// least the leader's commit index as of the call, and returns, per node
// name, how long that took.
func CaughtUp(ctx context.Context, c *api.Client, timeout time.Duration) (map[string]time.Duration, error) {
	start := time.Now()
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	target := st.CommitIndex
	members, err := c.Members(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]time.Duration{}
	for _, m := range members {
		if m.GossipState != "alive" {
			continue
		}
		mc := api.NewClient(m.APIAddr)
		for {
			s, err := mc.Status(ctx)
			if err == nil && s.AppliedIndex >= target && mc.Ready(ctx) == nil {
				out[m.Name] = time.Since(start)
				break
			}
			if time.Since(start) > timeout {
				return out, fmt.Errorf("%s not caught up after %s (applied %d of %d)", m.Name, timeout, s.AppliedIndex, target)
			}
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return out, nil
}

// SaveSize takes a snapshot through the API (the leader makes Raft take
// one and streams it) and returns its size and the time it took.
func SaveSize(ctx context.Context, c *api.Client) (int64, time.Duration, error) {
	start := time.Now()
	var cw countWriter
	if _, err := c.SaveSnapshot(ctx, &cw); err != nil {
		return 0, 0, err
	}
	return cw.n, time.Since(start), nil
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// Lookup is RCPT timing over SMTP.
type Lookup struct {
	RCPTs    int
	Errors   int         // replies other than the expected code
	Codes    map[int]int `json:",omitempty"` // those replies by code
	Examples []string    `json:",omitempty"` // a few of them: "code address"
	P50, P90 float64     // milliseconds
	P99, Max float64
	PerSec   float64
}

// RCPTLatency opens sessions SMTP sessions to smtpAddr and sends rcpts
// RCPT TO commands in all, for the addresses pick returns, measuring each
// round trip. Every 50 recipients the transaction is reset. want is the
// reply code expected (250 for existing accounts, 550 for unknown ones).
func RCPTLatency(ctx context.Context, smtpAddr string, sessions, rcpts int, want int, pick func(i int) string) (Lookup, error) {
	var next atomic.Int64
	var mu sync.Mutex
	var all []time.Duration
	var errs int
	codes := map[int]int{}
	var examples []string
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for s := 0; s < sessions; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A session ends after rcptsPerSession lookups (the server caps
			// commands per session) and the next one takes over.
			for ctx.Err() == nil && int(next.Load()) < rcpts {
				d, bad, err := rcptSession(ctx, smtpAddr, &next, rcpts, want, pick)
				mu.Lock()
				all = append(all, d...)
				errs += len(bad)
				for _, b := range bad {
					codes[b.code]++
					if len(examples) < 5 {
						examples = append(examples, fmt.Sprintf("%d %s", b.code, b.addr))
					}
				}
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	slices.Sort(all)
	at := func(q float64) float64 {
		if len(all) == 0 {
			return 0
		}
		i := max(0, min(int(q*float64(len(all))+0.5)-1, len(all)-1))
		return float64(all[i]) / 1e6
	}
	l := Lookup{RCPTs: len(all), Errors: errs, Codes: codes, Examples: examples, P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: at(1), PerSec: float64(len(all)) / el.Seconds()}
	return l, firstErr
}

// rcptsPerSession keeps a session well under the server's cap on commands
// without an accepted message (2000: smtpd's maxCommands).
const rcptsPerSession = 1000

type badReply struct {
	code int
	addr string
}

func rcptSession(ctx context.Context, addr string, next *atomic.Int64, total, want int, pick func(int) string) ([]time.Duration, []badReply, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	cmd := func(line string) (int, error) {
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		if line != "" {
			if _, err := w.WriteString(line + "\r\n"); err != nil {
				return 0, err
			}
			if err := w.Flush(); err != nil {
				return 0, err
			}
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return 0, err
			}
			if len(l) < 4 {
				return 0, fmt.Errorf("short reply %q", l)
			}
			if l[3] != '-' {
				return strconv.Atoi(l[:3])
			}
		}
	}
	if code, err := cmd(""); err != nil || code != 220 {
		return nil, nil, fmt.Errorf("banner: %d %v", code, err)
	}
	if code, err := cmd("EHLO bench.client.test"); err != nil || code != 250 {
		return nil, nil, fmt.Errorf("EHLO: %d %v", code, err)
	}
	var out []time.Duration
	var errs []badReply
	inTxn := 0
	defer func() { _, _ = cmd("QUIT") }()
	for n := 0; ctx.Err() == nil && n < rcptsPerSession; n++ {
		i := int(next.Add(1)) - 1
		if i >= total {
			break
		}
		if inTxn == 0 {
			if code, err := cmd("MAIL FROM:<bench@client.test>"); err != nil || code != 250 {
				return out, errs, fmt.Errorf("MAIL: %d %v", code, err)
			}
		}
		t := time.Now()
		rcpt := pick(i)
		code, err := cmd("RCPT TO:<" + rcpt + ">")
		if err != nil {
			return out, errs, err
		}
		out = append(out, time.Since(t))
		if code != want {
			errs = append(errs, badReply{code, rcpt})
		}
		if inTxn++; inTxn == 50 {
			if code, err := cmd("RSET"); err != nil || code != 250 {
				return out, errs, fmt.Errorf("RSET: %d %v", code, err)
			}
			inTxn = 0
		}
	}
	return out, errs, nil
}

// ErrNoNodes is returned when the cluster lists no live node.
var ErrNoNodes = errors.New("no live node in the cluster")

// LiveNodes returns the names of the live members.
func LiveNodes(ctx context.Context, c *api.Client) ([]string, error) {
	ms, err := c.Members(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if m.GossipState == "alive" {
			out = append(out, m.Name)
		}
	}
	if len(out) == 0 {
		return nil, ErrNoNodes
	}
	slices.Sort(out)
	return out, nil
}

// RSS returns a node's resident memory from its /metrics
// (process_resident_memory_bytes).
func RSS(ctx context.Context, apiURL string) (int64, error) {
	return metric(ctx, apiURL, "process_resident_memory_bytes")
}

func metric(ctx context.Context, apiURL, name string) (int64, error) {
	if !strings.Contains(apiURL, "://") {
		apiURL = "http://" + apiURL
	}
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(apiURL, "/")+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	// /metrics needs the API token when the cluster has one (--api-token-file).
	if token := os.Getenv("CLUSTERMAIL_TOKEN"); token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			return int64(v), err
		}
	}
	return 0, fmt.Errorf("%s not in /metrics", name)
}
