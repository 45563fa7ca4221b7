package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"clustermail/api"
)

// runCmd runs the clustermail command line args on a fresh root command and
// returns what it wrote to stdout.
func runCmd(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var stdout, stderr bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetIn(strings.NewReader(stdin))
	err := root.Execute()
	return stdout.String(), err
}

// isolateEnv makes the tests independent of the developer's environment.
func isolateEnv(t *testing.T) {
	t.Setenv(envAPI, "")
	t.Setenv(envToken, "")
}

// reply is a canned answer of the fake API.
type reply struct {
	status int    // 0 means 200
	body   string // sent as is
}

// request is what the fake API received.
type request struct {
	method, uri, body, auth string
}

// fakeAPI is an admin API that answers from a table keyed by
// "METHOD /path?query" and records every request.
type fakeAPI struct {
	t      *testing.T
	routes map[string]reply
	mu     sync.Mutex
	got    []request
}

func newFakeAPI(t *testing.T, routes map[string]reply) (*fakeAPI, *httptest.Server) {
	f := &fakeAPI{t: t, routes: routes}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	key := r.Method + " " + r.URL.RequestURI()
	f.mu.Lock()
	f.got = append(f.got, request{method: r.Method, uri: r.URL.RequestURI(), body: string(body), auth: r.Header.Get("Authorization")})
	f.mu.Unlock()
	rep, ok := f.routes[key]
	if !ok {
		f.t.Errorf("unexpected request %s", key)
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: "no such route"})
		return
	}
	if strings.HasPrefix(rep.body, "{") || strings.HasPrefix(rep.body, "[") {
		w.Header().Set("Content-Type", "application/json")
	}
	if rep.status != 0 {
		w.WriteHeader(rep.status)
	}
	_, _ = io.WriteString(w, rep.body)
}

func (f *fakeAPI) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.got...)
}

var fakeCreated = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func TestOperatorCommands(t *testing.T) {
	createdJSON := `"` + fakeCreated.Format(time.RFC3339) + `"`
	status := `{"node":"n1","state":"Leader","leader":"n1","leader_addr":"10.0.0.1:7000","term":3,` +
		`"commit_index":42,"applied_index":41,"last_log_index":43,"voters":["n1","n2","n3"],"non_voters":[]}`

	tests := []struct {
		name   string
		args   []string
		stdin  string
		routes map[string]reply
		// want are the requests in order; a body is checked as contained
		// JSON fragments so that field order and zero fields do not matter.
		want     []request
		wantOut  []string // substrings of stdout, in order
		exactOut string   // stdout must equal it unless wantOut or wantErr is set
		noOut    []string // must not appear in stdout
		wantErr  string
	}{
		{
			name:     "domain add",
			args:     []string{"domain", "add", "example.test"},
			routes:   map[string]reply{"POST /v1/domains": {201, `{"name":"example.test","created":` + createdJSON + `}`}},
			want:     []request{{method: "POST", uri: "/v1/domains", body: `"name":"example.test"`}},
			exactOut: "added domain example.test\n",
		},
		{
			name:    "domain add conflict",
			args:    []string{"domain", "add", "example.test"},
			routes:  map[string]reply{"POST /v1/domains": {409, `{"error":"domain already exists"}`}},
			wantErr: "domain add: example.test: domain already exists",
		},
		{
			name:     "domain add json",
			args:     []string{"domain", "add", "example.test", "--json"},
			routes:   map[string]reply{"POST /v1/domains": {201, `{"name":"example.test","created":` + createdJSON + `}`}},
			exactOut: "{\n  \"name\": \"example.test\",\n  \"created\": " + createdJSON + "\n}\n",
		},
		{
			name:     "domain list empty",
			args:     []string{"domain", "list"},
			routes:   map[string]reply{"GET /v1/domains": {0, `[]`}},
			exactOut: "no domains\n",
		},
		{
			name:     "domain list empty json null",
			args:     []string{"domain", "list", "--json"},
			routes:   map[string]reply{"GET /v1/domains": {0, `null`}},
			exactOut: "[]\n",
		},
		{
			name:   "domain list table",
			args:   []string{"domain", "ls"},
			routes: map[string]reply{"GET /v1/domains": {0, `[{"name":"a.test","created":` + createdJSON + `},{"name":"bb.test","created":` + createdJSON + `}]`}},
			exactOut: "DOMAIN   CREATED\n" +
				"a.test   " + formatTime(fakeCreated) + "\n" +
				"bb.test  " + formatTime(fakeCreated) + "\n",
		},
		{
			name:     "domain remove",
			args:     []string{"domain", "remove", "example.test"},
			routes:   map[string]reply{"DELETE /v1/domains/example.test": {204, ""}},
			want:     []request{{method: "DELETE", uri: "/v1/domains/example.test"}},
			exactOut: "removed domain example.test\n",
		},
		{
			name:     "domain remove json prints nothing",
			args:     []string{"domain", "remove", "example.test", "--json"},
			routes:   map[string]reply{"DELETE /v1/domains/example.test": {204, ""}},
			exactOut: "",
		},
		{
			name:     "flag before subcommand",
			args:     []string{"domain", "--json", "remove", "example.test"},
			routes:   map[string]reply{"DELETE /v1/domains/example.test": {204, ""}},
			exactOut: "",
		},
		{
			name:    "server error without JSON body",
			args:    []string{"domain", "list"},
			routes:  map[string]reply{"GET /v1/domains": {500, "boom\n"}},
			wantErr: "domain list: boom",
		},
		{
			name:    "unauthorized without token gets a hint",
			args:    []string{"domain", "list"},
			routes:  map[string]reply{"GET /v1/domains": {401, `{"error":"missing bearer token"}`}},
			wantErr: "domain list: missing bearer token (is CLUSTERMAIL_TOKEN set?)",
		},
		{
			name:  "user add with password on stdin",
			args:  []string{"user", "add", "alice@example.test", "--password-stdin", "--node", "n2", "--quota", "1.5M"},
			stdin: "pass word\r\nignored\n",
			routes: map[string]reply{"POST /v1/users": {201,
				`{"address":"alice@example.test","node":"n2","quota":1572864,"created":` + createdJSON + `}`}},
			want: []request{{method: "POST", uri: "/v1/users",
				body: `"address":"alice@example.test"|"password":"pass word"|"node":"n2"|"quota":1572864`}},
			exactOut: "added user alice@example.test (node n2, quota 1.5MiB)\n",
		},
		{
			name:    "user add empty stdin",
			args:    []string{"user", "add", "alice@example.test", "--password-stdin"},
			stdin:   "\n",
			wantErr: "user add: alice@example.test: empty password on stdin",
		},
		{
			name:    "user add bad quota",
			args:    []string{"user", "add", "alice@example.test", "--quota", "lots"},
			wantErr: `user add: alice@example.test: --quota: invalid size "lots"`,
		},
		{
			name: "user add generated password",
			args: []string{"user", "add", "bob@example.test"},
			routes: map[string]reply{"POST /v1/users": {201,
				`{"address":"bob@example.test","node":"n1","quota":0,"created":` + createdJSON + `}`}},
			want:    []request{{method: "POST", uri: "/v1/users", body: `"address":"bob@example.test"`}},
			wantOut: []string{"added user bob@example.test (node n1, quota unlimited)\n", "password: ", "Keep this password"},
		},
		{
			name:   "user add conflict",
			args:   []string{"user", "add", "bob@example.test"},
			routes: map[string]reply{"POST /v1/users": {409, `{"error":"user already exists"}`}},
			// The generated password of a failed add is useless: do not
			// show it.
			noOut:   []string{"password"},
			wantErr: "user add: bob@example.test: user already exists",
		},
		{
			name: "user list of a domain",
			args: []string{"user", "list", "example.test"},
			routes: map[string]reply{"GET /v1/users?domain=example.test": {0,
				`[{"address":"alice@example.test","node":"n2","quota":524288000,"created":` + createdJSON + `},` +
					`{"address":"bob@example.test","node":"n1","quota":0,"created":` + createdJSON + `}]`}},
			exactOut: "ADDRESS             NODE  QUOTA      CREATED\n" +
				"alice@example.test  n2    500MiB     " + formatTime(fakeCreated) + "\n" +
				"bob@example.test    n1    unlimited  " + formatTime(fakeCreated) + "\n",
		},
		{
			name:     "user list empty",
			args:     []string{"user", "list", "example.test"},
			routes:   map[string]reply{"GET /v1/users?domain=example.test": {0, `[]`}},
			exactOut: "no users in example.test\n",
		},
		{
			name:     "user list all json",
			args:     []string{"user", "list", "--json"},
			routes:   map[string]reply{"GET /v1/users": {0, `[]`}},
			exactOut: "[]\n",
		},
		{
			name: "user show",
			args: []string{"user", "show", "alice@example.test"},
			routes: map[string]reply{"GET /v1/users/alice@example.test": {0,
				`{"address":"alice@example.test","node":"n2","quota":2147483648,"created":` + createdJSON + `}`}},
			exactOut: "address:    alice@example.test\n" +
				"owner node: n2\n" +
				"quota:      2GiB\n" +
				"created:    " + formatTime(fakeCreated) + "\n",
		},
		{
			name:    "user show missing",
			args:    []string{"user", "show", "nobody@example.test"},
			routes:  map[string]reply{"GET /v1/users/nobody@example.test": {404, `{"error":"no such user"}`}},
			wantErr: "user show: nobody@example.test: no such user",
		},
		{
			name:     "user passwd",
			args:     []string{"user", "passwd", "alice@example.test", "--password-stdin"},
			stdin:    "n3w-secret\n",
			routes:   map[string]reply{"POST /v1/users/alice@example.test/password": {204, ""}},
			want:     []request{{method: "POST", uri: "/v1/users/alice@example.test/password", body: `{"password":"n3w-secret"}`}},
			exactOut: "password of alice@example.test changed\n",
		},
		{
			name:     "user remove",
			args:     []string{"user", "rm", "alice@example.test"},
			routes:   map[string]reply{"DELETE /v1/users/alice@example.test": {204, ""}},
			want:     []request{{method: "DELETE", uri: "/v1/users/alice@example.test"}},
			exactOut: "removed user alice@example.test\n",
		},
		{
			name: "alias add with comma-separated targets",
			args: []string{"alias", "add", "team@example.test", "a@example.test,b@example.test", "c@example.test"},
			routes: map[string]reply{"POST /v1/aliases": {201,
				`{"alias":"team@example.test","targets":["a@example.test","b@example.test","c@example.test"]}`}},
			want: []request{{method: "POST", uri: "/v1/aliases",
				body: `"alias":"team@example.test"|"targets":["a@example.test","b@example.test","c@example.test"]`}},
			exactOut: "alias team@example.test -> a@example.test, b@example.test, c@example.test\n",
		},
		{
			name:    "alias add only commas",
			args:    []string{"alias", "add", "team@example.test", ","},
			wantErr: "alias add: team@example.test: no target address given",
		},
		{
			name: "alias list",
			args: []string{"alias", "list"},
			routes: map[string]reply{"GET /v1/aliases": {0,
				`[{"alias":"team@example.test","targets":["a@example.test","b@example.test"]}]`}},
			exactOut: "ALIAS              TARGETS\n" +
				"team@example.test  a@example.test, b@example.test\n",
		},
		{
			name:     "alias list empty",
			args:     []string{"alias", "list"},
			routes:   map[string]reply{"GET /v1/aliases": {0, `[]`}},
			exactOut: "no aliases\n",
		},
		{
			name:     "alias remove",
			args:     []string{"alias", "remove", "team@example.test"},
			routes:   map[string]reply{"DELETE /v1/aliases/team@example.test": {204, ""}},
			want:     []request{{method: "DELETE", uri: "/v1/aliases/team@example.test"}},
			exactOut: "removed alias team@example.test\n",
		},
		{
			name: "mailbox list truncates and sanitizes",
			args: []string{"mailbox", "list", "alice@example.test"},
			routes: map[string]reply{"GET /v1/mailboxes/alice@example.test/messages": {0,
				`[{"uid":7,"date":` + createdJSON + `,"from":"bob@example.test",` +
					`"subject":"A very long subject line that goes on and on\tand on","size":2048}]`}},
			exactOut: "UID  DATE                 FROM              SUBJECT                                   SIZE\n" +
				"7    " + formatTime(fakeCreated) + "  bob@example.test  A very long subject line that goes on a…  2KiB\n",
		},
		{
			name:     "mailbox list empty",
			args:     []string{"mailbox", "list", "alice@example.test"},
			routes:   map[string]reply{"GET /v1/mailboxes/alice@example.test/messages": {0, `[]`}},
			exactOut: "no messages for alice@example.test\n",
		},
		{
			name:     "mailbox show writes raw bytes",
			args:     []string{"mailbox", "show", "alice@example.test", "7", "--json"},
			routes:   map[string]reply{"GET /v1/mailboxes/alice@example.test/messages/7": {0, "Subject: hi\r\n\r\nbody\r\n"}},
			exactOut: "Subject: hi\r\n\r\nbody\r\n",
		},
		{
			name:    "mailbox show bad uid",
			args:    []string{"mailbox", "show", "alice@example.test", "-1"},
			wantErr: "unknown shorthand flag", // "-1" reads as a flag: the usage line tells what to do
		},
		{
			name:    "mailbox show zero uid",
			args:    []string{"mailbox", "show", "alice@example.test", "0"},
			wantErr: `mailbox show: alice@example.test: invalid UID "0"`,
		},
		{
			name:    "mailbox show missing message",
			args:    []string{"mailbox", "show", "alice@example.test", "9"},
			routes:  map[string]reply{"GET /v1/mailboxes/alice@example.test/messages/9": {404, `{"error":"no such message"}`}},
			wantErr: "mailbox show: alice@example.test UID 9: no such message",
		},
		{
			name: "cluster members",
			args: []string{"cluster", "members"},
			routes: map[string]reply{"GET /v1/cluster/members": {0,
				`[{"name":"n1","id":"x","gossip_addr":"10.0.0.1:7946","gossip_state":"alive","raft_role":"leader","suffrage":"voter","version":"1.0"},` +
					`{"name":"n2","gossip_addr":"10.0.0.2:7946","gossip_state":"suspect","raft_role":"none","suffrage":"none"}]`}},
			exactOut: "NAME  GOSSIP-ADDR    GOSSIP-STATE  RAFT-ROLE  SUFFRAGE  VERSION\n" +
				"n1    10.0.0.1:7946  alive         leader     voter     1.0\n" +
				"n2    10.0.0.2:7946  suspect       none       none      -\n",
		},
		{
			name:   "cluster status",
			args:   []string{"cluster", "status"},
			routes: map[string]reply{"GET /v1/cluster/status": {0, status}},
			exactOut: "node:           n1\n" +
				"state:          Leader\n" +
				"leader:         n1 (10.0.0.1:7000)\n" +
				"term:           3\n" +
				"commit index:   42\n" +
				"applied index:  41\n" +
				"last log index: 43\n" +
				"voters:         n1, n2, n3\n" +
				"non-voters:     none\n",
		},
		{
			name:    "cluster status json",
			args:    []string{"cluster", "status", "--json"},
			routes:  map[string]reply{"GET /v1/cluster/status": {0, status}},
			wantOut: []string{"{\n  \"node\": \"n1\",\n", "  \"commit_index\": 42,\n"},
		},
		{
			name: "cluster leave names the node",
			args: []string{"cluster", "leave"},
			routes: map[string]reply{
				"GET /v1/cluster/status": {0, status},
				"POST /v1/cluster/leave": {202, ""},
			},
			want:    []request{{method: "GET", uri: "/v1/cluster/status"}, {method: "POST", uri: "/v1/cluster/leave"}},
			wantOut: []string{"node n1 (http://", ") left the cluster and is stopping\n"},
		},
		{
			name:     "cluster remove-peer",
			args:     []string{"cluster", "remove-peer", "n3"},
			routes:   map[string]reply{"POST /v1/cluster/remove-peer": {0, ""}},
			want:     []request{{method: "POST", uri: "/v1/cluster/remove-peer", body: `{"name":"n3"}`}},
			exactOut: "removed n3 from the Raft configuration\n",
		},
		{
			name:    "cluster remove-peer unknown",
			args:    []string{"cluster", "remove-peer", "n9"},
			routes:  map[string]reply{"POST /v1/cluster/remove-peer": {404, `{"error":"no such peer"}`}},
			wantErr: "cluster remove-peer: n9: no such peer",
		},
		{
			name: "cluster transfer-leader to any",
			args: []string{"cluster", "transfer-leader"},
			routes: map[string]reply{"POST /v1/cluster/transfer-leader": {0,
				`{"node":"n1","state":"Follower","leader":"n2","leader_addr":"10.0.0.2:7000","term":4}`}},
			want:     []request{{method: "POST", uri: "/v1/cluster/transfer-leader", body: `{"name":""}`}},
			exactOut: "leadership transferred: the leader is now n2 (10.0.0.2:7000) (term 4)\n",
		},
		{
			name: "cluster transfer-leader to a node",
			args: []string{"cluster", "transfer-leader", "n3"},
			routes: map[string]reply{"POST /v1/cluster/transfer-leader": {0,
				`{"node":"n1","state":"Follower","leader":"n3","leader_addr":"10.0.0.3:7000","term":4}`}},
			want:    []request{{method: "POST", uri: "/v1/cluster/transfer-leader", body: `{"name":"n3"}`}},
			wantOut: []string{"the leader is now n3 (10.0.0.3:7000)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			f, srv := newFakeAPI(t, tt.routes)
			stdout, err := runCmd(t, tt.stdin, append(tt.args, "--api", srv.URL)...)

			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("no error, want %q; stdout:\n%s", tt.wantErr, stdout)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q, want it to contain %q", err, tt.wantErr)
			}
			if tt.exactOut != "" || (tt.wantOut == nil && tt.wantErr == "") {
				if stdout != tt.exactOut {
					t.Errorf("stdout:\n%q\nwant:\n%q", stdout, tt.exactOut)
				}
			}
			rest := stdout
			for _, w := range tt.wantOut {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("stdout lacks %q (in order); stdout:\n%s", w, stdout)
				}
				rest = rest[i+len(w):]
			}
			for _, w := range tt.noOut {
				if strings.Contains(stdout, w) {
					t.Errorf("stdout contains %q:\n%s", w, stdout)
				}
			}

			if tt.want == nil {
				return
			}
			got := f.requests()
			if len(got) != len(tt.want) {
				t.Fatalf("got %d requests %+v, want %d", len(got), got, len(tt.want))
			}
			for i, w := range tt.want {
				g := got[i]
				if g.method != w.method || g.uri != w.uri {
					t.Errorf("request %d: %s %s, want %s %s", i, g.method, g.uri, w.method, w.uri)
				}
				for _, frag := range strings.Split(w.body, "|") {
					if frag != "" && !strings.Contains(g.body, frag) {
						t.Errorf("request %d body %s lacks %s", i, g.body, frag)
					}
				}
				if g.auth != "" {
					t.Errorf("request %d sent Authorization %q without a token set", i, g.auth)
				}
			}
		})
	}
}

// TestUserAddGeneratedPasswordIsSent checks that the password printed once
// is the one the account was created with, in text and in JSON output.
func TestUserAddGeneratedPasswordIsSent(t *testing.T) {
	pwLine := regexp.MustCompile(`(?m)^password: ([A-Za-z0-9]{20})$`)
	for _, asJSON := range []bool{false, true} {
		isolateEnv(t)
		f, srv := newFakeAPI(t, map[string]reply{"POST /v1/users": {201, `{"address":"bob@example.test","node":"n1"}`}})
		args := []string{"user", "add", "bob@example.test", "--api", srv.URL}
		if asJSON {
			args = append(args, "--json")
		}
		stdout, err := runCmd(t, "", args...)
		if err != nil {
			t.Fatal(err)
		}
		var printed string
		if asJSON {
			var res struct {
				Address  string `json:"address"`
				Password string `json:"password"`
			}
			if err := json.Unmarshal([]byte(stdout), &res); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, stdout)
			}
			if res.Address != "bob@example.test" {
				t.Errorf("address %q", res.Address)
			}
			printed = res.Password
		} else if m := pwLine.FindStringSubmatch(stdout); m != nil {
			printed = m[1]
		}
		if len(printed) != generatedPasswordLen {
			t.Fatalf("json=%v: no generated password in output:\n%s", asJSON, stdout)
		}
		var sent api.UserAddRequest
		if err := json.Unmarshal([]byte(f.requests()[0].body), &sent); err != nil {
			t.Fatal(err)
		}
		if sent.Password != printed {
			t.Errorf("json=%v: sent password %q, printed %q", asJSON, sent.Password, printed)
		}
		if strings.Count(stdout, printed) != 1 {
			t.Errorf("json=%v: password printed %d times", asJSON, strings.Count(stdout, printed))
		}
	}
}

// TestTokenAndEnv checks that CLUSTERMAIL_API picks the node and
// CLUSTERMAIL_TOKEN is sent as a bearer token.
func TestTokenAndEnv(t *testing.T) {
	f, srv := newFakeAPI(t, map[string]reply{"GET /v1/domains": {0, `[]`}})
	t.Setenv(envAPI, srv.URL)
	t.Setenv(envToken, "s3cr3t")
	if _, err := runCmd(t, "", "domain", "list"); err != nil {
		t.Fatal(err)
	}
	got := f.requests()
	if len(got) != 1 || got[0].auth != "Bearer s3cr3t" {
		t.Fatalf("requests %+v, want one with Authorization: Bearer s3cr3t", got)
	}
}

// TestTimeout checks that --timeout bounds a request to a node that does
// not answer.
func TestTimeout(t *testing.T) {
	isolateEnv(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	start := time.Now()
	_, err := runCmd(t, "", "cluster", "status", "--api", srv.URL, "--timeout", "100ms")
	if err == nil || !strings.Contains(err.Error(), "cluster status: cannot reach the admin API at "+srv.URL) {
		t.Fatalf("error %v, want a timeout naming the URL", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v despite --timeout 100ms", d)
	}
}

// TestArgumentValidation checks that wrong command lines fail before any
// request is made, with a message that shows the usage.
func TestArgumentValidation(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"domain", "add"}, "accepts 1 arg(s), received 0\nusage: clustermail domain add DOMAIN"},
		{[]string{"domain", "add", "a.test", "b.test"}, "accepts 1 arg(s), received 2"},
		{[]string{"domain", "list", "x"}, `unknown command "x" for "clustermail domain list"`},
		{[]string{"domain", "lst"}, `unknown command "lst" for "clustermail domain"`},
		{[]string{"domain", "remove"}, "accepts 1 arg(s), received 0"},
		{[]string{"user", "add"}, "accepts 1 arg(s), received 0"},
		{[]string{"user", "list", "a.test", "b.test"}, "accepts at most 1 arg(s), received 2"},
		{[]string{"user", "show"}, "accepts 1 arg(s), received 0"},
		{[]string{"user", "passwd", "alice@example.test"}, `required flag(s) "password-stdin" not set`},
		{[]string{"user", "remove"}, "accepts 1 arg(s), received 0"},
		{[]string{"user", "add", "a@x.test", "--nosuch"}, "unknown flag: --nosuch\nusage: clustermail user add ADDRESS"},
		{[]string{"alias", "add", "team@example.test"}, "requires at least 2 arg(s), only received 1"},
		{[]string{"alias", "remove"}, "accepts 1 arg(s), received 0"},
		{[]string{"mailbox", "list"}, "accepts 1 arg(s), received 0"},
		{[]string{"mailbox", "show", "alice@example.test"}, "accepts 2 arg(s), received 1"},
		{[]string{"mailbox", "show", "alice@example.test", "abc"}, `invalid UID "abc"`},
		{[]string{"mailbox", "show", "alice@example.test", "4294967296"}, `invalid UID "4294967296"`},
		{[]string{"cluster", "members", "x"}, "unknown command"},
		{[]string{"cluster", "remove-peer"}, "accepts 1 arg(s), received 0"},
		{[]string{"cluster", "transfer-leader", "n1", "n2"}, "accepts at most 1 arg(s), received 2"},
		{[]string{"cluster", "status", "--timeout", "soon"}, `invalid argument "soon" for "--timeout"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			isolateEnv(t)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				t.Errorf("unexpected request %s %s", r.Method, r.URL)
			}))
			t.Cleanup(srv.Close)
			_, err := runCmd(t, "", append(tt.args, "--api", srv.URL)...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestOperatorFlagsStayOffRoot checks that --api and --json belong to the
// operator groups only, so they do not leak into "server" and "dev".
func TestOperatorFlagsStayOffRoot(t *testing.T) {
	root := newRootCmd()
	for _, name := range []string{"api", "json", "timeout"} {
		if root.PersistentFlags().Lookup(name) != nil {
			t.Errorf("--%s is a persistent flag of root", name)
		}
	}
	for _, group := range []string{"cluster", "domain", "user", "alias", "mailbox"} {
		cmd, _, err := root.Find([]string{group})
		if err != nil || cmd.Name() != group {
			t.Fatalf("group %s not registered: %v", group, err)
		}
		for _, name := range []string{"api", "json", "timeout"} {
			if cmd.PersistentFlags().Lookup(name) == nil {
				t.Errorf("%s lacks --%s", group, name)
			}
		}
	}
}
