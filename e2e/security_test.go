package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"clustermail/api"
	"clustermail/certs"
	"clustermail/peer"
)

// secureFlags returns the flags of a node with its own certificate from
// the CA in caDir, the gossip key and the API token file.
func secureFlags(t *testing.T, caDir, name, gossipKey, tokenFile string) []string {
	t.Helper()
	ca := filepath.Join(caDir, certs.CAFile)
	cf, kf, err := certs.CreateNodeCert(caDir, ca, filepath.Join(caDir, certs.CAKeyFile), certs.NodeCert{Name: name, Days: 1})
	if err != nil {
		t.Fatal(err)
	}
	return []string{"--cluster-ca", ca, "--cluster-cert", cf, "--cluster-key", kf, "--gossip-key", gossipKey,
		"--api-token-file", tokenFile}
}

// startSecureCluster is newCluster with flags of each node's own.
func startSecureCluster(t *testing.T, flags func(name string) []string) *testCluster {
	t.Helper()
	const n = 3
	ports := freePorts(t, 4*n)
	c := &testCluster{t: t}
	var gossip []string
	base := t.TempDir()
	for i := 0; i < n; i++ {
		p := ports[4*i : 4*i+4]
		name := "n" + strconv.Itoa(i+1)
		nd := &node{t: t, name: name, dir: filepath.Join(base, name), gossip: addr(p[0]), raft: addr(p[1]), api: addr(p[2]),
			smtp: addr(p[3]), expect: n, extra: flags(name)}
		c.nodes = append(c.nodes, nd)
		gossip = append(gossip, nd.gossip)
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
		nd.join = gossip
		nd.start()
	}
	for _, nd := range c.nodes {
		nd.waitReady(60 * time.Second)
	}
	return c
}

func newGossipKey(t *testing.T) string {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k)
}

// cliToken runs an operator command with CLUSTERMAIL_TOKEN set.
func cliToken(t *testing.T, n *node, token string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, append(args, "--api", "http://"+n.api)...)
	cmd.Env = append(os.Environ(), "CLUSTERMAIL_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestSecurityMutualTLSGossipKeyAndToken: a cluster whose cluster port is
// mutual TLS, whose gossip is encrypted and whose API wants a token works
// end to end; the API refuses requests without the token; the gossip key
// rotates on every node; a node with a certificate of another CA never
// joins Raft.
func TestSecurityMutualTLSGossipKeyAndToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	caDir := t.TempDir()
	if _, _, err := certs.CreateCA(caDir, 1); err != nil {
		t.Fatal(err)
	}
	token := "tok-" + newGossipKey(t)[:20]
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := newGossipKey(t)
	c := startSecureCluster(t, func(name string) []string { return secureFlags(t, caDir, name, key, tokenFile) })
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	authed := func(n *node) *api.Client { return n.client().WithToken(token) }

	waitVoters(t, authed(n1), 3, 30*time.Second)
	for _, nd := range c.nodes {
		b, _ := os.ReadFile(nd.dir + ".log")
		if strings.Contains(string(b), "cluster traffic is not encrypted") || strings.Contains(string(b), "gossip is not encrypted") {
			t.Fatalf("%s warns of clear traffic although it is secured", nd.name)
		}
	}

	t.Run("api token", func(t *testing.T) {
		var ae *api.Error
		if _, err := n1.client().Members(ctx(t)); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
			t.Fatalf("members without a token: %v", err)
		}
		if _, err := n1.client().WithToken("wrong").Domains(ctx(t)); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
			t.Fatalf("domains with a wrong token: %v", err)
		}
		if err := n1.client().Ready(ctx(t)); err != nil {
			t.Fatalf("readiness needs no token: %v", err)
		}
		for path, want := range map[string]int{"/metrics": 401, "/v1/health/live": 200, "/v1/health/ready": 200} {
			resp, err := http.Get("http://" + n2.api + path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Fatalf("GET %s without a token: %d, want %d", path, resp.StatusCode, want)
			}
			if want == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatalf("GET %s: 401 without WWW-Authenticate", path)
			}
		}
		if out, err := cli(t, n1, "domain", "list"); err == nil || !strings.Contains(out, "CLUSTERMAIL_TOKEN") {
			t.Fatalf("CLI without the token: %v: %s", err, out)
		}
		if out, err := cliToken(t, n1, token, "cluster", "status"); err != nil {
			t.Fatalf("CLI with the token: %v: %s", err, out)
		}
	})

	t.Run("mail across nodes", func(t *testing.T) {
		if _, err := authed(n2).AddDomain(ctx(t), "secure.test"); err != nil {
			t.Fatal(err)
		}
		if _, err := authed(n1).AddUser(ctx(t), api.UserAddRequest{Address: "alice@secure.test", Password: "pw", Node: "n3"}); err != nil {
			t.Fatal(err)
		}
		code, text, err := send(n1.smtp, "sender@client.test", []string{"alice@secure.test"}, message("over-mtls"))
		if err != nil || code != 250 {
			t.Fatalf("send: %d %s %v", code, text, err)
		}
		// Read on n2: forwarded to the owner n3 over the cluster port, with the token.
		waitFor(t, 30*time.Second, "the message in alice's mailbox", func() error {
			got, err := subjects(t, authed(n2), "alice@secure.test")
			if err != nil {
				return err
			}
			if got["over-mtls"] != 1 {
				return fmt.Errorf("mailbox: %v", got)
			}
			return nil
		})
		// The forwarded request carries the token: without it, 401 too.
		var ae *api.Error
		if _, err := n2.client().Messages(ctx(t), "alice@secure.test"); !errors.As(err, &ae) || ae.Status != 401 {
			t.Fatalf("forwarded read without a token: %v", err)
		}
	})

	t.Run("plaintext peer refused", func(t *testing.T) {
		hc := peer.NewHTTPClient()
		hc.Timeout = 5 * time.Second
		if resp, err := hc.Get("http://" + n1.raft + "/internal/raft-peers"); err == nil {
			resp.Body.Close()
			t.Fatalf("the cluster port answered a plaintext peer: %s", resp.Status)
		}
	})

	t.Run("gossip key rotation", func(t *testing.T) {
		list := func() []api.KeyringNode {
			out, err := cliToken(t, n3, token, "keyring", "list", "--json")
			if err != nil {
				t.Fatalf("keyring list: %v: %s", err, out)
			}
			var res []api.KeyringNode
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			return res
		}
		expect := func(primary string, n int) {
			t.Helper()
			res := list()
			if len(res) != 3 {
				t.Fatalf("keyring list: %+v", res)
			}
			for _, r := range res {
				if r.Error != "" || r.Primary != primary || len(r.Keys) != n {
					t.Fatalf("keyring of %s: %+v, want primary %s and %d keys", r.Node, r, primary, n)
				}
			}
		}
		expect(key, 1)
		newKey := newGossipKey(t)
		for _, op := range []string{"install", "use"} {
			if out, err := cliToken(t, n1, token, "keyring", op, newKey); err != nil {
				t.Fatalf("keyring %s: %v: %s", op, err, out)
			}
		}
		if out, err := cliToken(t, n2, token, "keyring", "remove", key); err != nil {
			t.Fatalf("keyring remove: %v: %s", err, out)
		}
		expect(newKey, 1)
		key = newKey
		// Gossip goes on with the new key only.
		waitFor(t, 20*time.Second, "all members alive after the rotation", func() error {
			ms, err := authed(n1).Members(ctx(t))
			if err != nil {
				return err
			}
			for _, m := range ms {
				if m.GossipState != "alive" {
					return fmt.Errorf("%s is %s", m.Name, m.GossipState)
				}
			}
			return nil
		})
	})

	t.Run("node of another CA never joins raft", func(t *testing.T) {
		otherCA := t.TempDir()
		if _, _, err := certs.CreateCA(otherCA, 1); err != nil {
			t.Fatal(err)
		}
		p := freePorts(t, 4)
		rogue := &node{t: t, name: "n4", dir: filepath.Join(t.TempDir(), "n4"), gossip: addr(p[0]), raft: addr(p[1]),
			api: addr(p[2]), smtp: addr(p[3]), join: []string{n1.gossip, n2.gossip},
			// The gossip key leaked, the cluster CA did not.
			extra: secureFlags(t, otherCA, "n4", key, tokenFile)}
		c.nodes = append(c.nodes, rogue)
		rogue.start()
		waitFor(t, 30*time.Second, "the rogue node seen by gossip", func() error {
			if m, ok := securedMembers(t, n1, token)["n4"]; !ok || m.GossipState != "alive" {
				return fmt.Errorf("n4 not in gossip yet: %+v", m)
			}
			return nil
		})
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if s := securedMembers(t, n1, token)["n4"].Suffrage; s != "none" {
				t.Fatalf("the node of another CA became a %s", s)
			}
			time.Sleep(500 * time.Millisecond)
		}
		refusedBy := func(msg string) bool {
			for _, nd := range c.nodes[:3] {
				if b, _ := os.ReadFile(nd.dir + ".log"); strings.Contains(string(b), msg) {
					return true
				}
			}
			return false
		}
		if !refusedBy("peer refused, TLS handshake failed") || !refusedBy("not adding a node whose cluster port fails mutual TLS") {
			t.Fatal("the refusal of the rogue node was not logged")
		}
		// The cluster is unharmed, and places no mailbox on the refused node.
		for i := range 8 {
			u, err := authed(n1).AddUser(ctx(t), api.UserAddRequest{Address: fmt.Sprintf("u%d@secure.test", i), Password: "pw"})
			if err != nil {
				t.Fatal(err)
			}
			if u.Node == "n4" {
				t.Fatalf("%s placed on the refused node", u.Address)
			}
		}
		code, text, err := send(n2.smtp, "sender@client.test", []string{"alice@secure.test"}, message("after-rogue"))
		if err != nil || code != 250 {
			t.Fatalf("send after the rogue node: %d %s %v", code, text, err)
		}
	})
}

// securedMembers lists the cluster as n sees it, with the API token.
func securedMembers(t *testing.T, n *node, token string) map[string]api.Member {
	t.Helper()
	ms, err := n.client().WithToken(token).Members(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]api.Member{}
	for _, m := range ms {
		out[m.Name] = m
	}
	return out
}
