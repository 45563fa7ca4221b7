package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"clustermail/api"
	"clustermail/certs"
)

// Mail access end to end: IMAP and POP3 on every node of a three-node
// cluster, for an account owned by one node (n1), read and changed through
// the other two, which reach the owner's store over the cluster port
// (design promise 4). Real clients: Python's imaplib and poplib, curl, and
// go-imap v2's client.
//
// Roles in every test: n1 owns the mailbox, n3 is where mail comes in over
// SMTP, n2 (and n3) is where clients read it.

const (
	acDomain = "access.test"
	acUser   = "reader@access.test"
	acPass   = "reader's password"
	acSender = "sender@client.test"
)

// accessNode is a node with its own IMAP and POP3 listeners: STARTTLS /
// STLS on imap and pop3, implicit TLS on imaps and pop3s.
type accessNode struct {
	*node
	imap, imaps, pop3, pop3s string
}

type accessCluster struct {
	t     *testing.T
	nodes []*accessNode
}

// newAccessCluster starts three nodes, each with its own mail access ports
// (the shared newCluster gives every node the same extra flags), creates
// the domain and the account acUser on n1, and returns once all are ready.
// extra applies to every node.
func newAccessCluster(t *testing.T, quota int64, extra ...string) *accessCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real processes")
	}
	t.Parallel()
	dir := t.TempDir()
	cert, key, err := certs.WriteSelfSigned(dir, []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	extra = append([]string{"--tls-cert", cert, "--tls-key", key}, extra...)
	var c *accessCluster
	// freePorts releases its ports before the nodes bind them, so with
	// tests running in parallel one may be taken meanwhile: a node then
	// exits at start, and the cluster starts again on other ports.
	for attempt := 1; ; attempt++ {
		if c, err = startAccessNodes(t, filepath.Join(dir, strconv.Itoa(attempt)), extra); err == nil {
			break
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("starting again on other ports: %v", err)
	}
	if _, err := c.nodes[1].client().AddDomain(ctx(t), acDomain); err != nil {
		t.Fatal(err)
	}
	u, err := c.nodes[2].client().AddUser(ctx(t), api.UserAddRequest{Address: acUser, Password: acPass, Node: "n1", Quota: quota})
	if err != nil {
		t.Fatal(err)
	}
	if u.Node != "n1" {
		t.Fatalf("%s placed on %s, asked for n1", acUser, u.Node)
	}
	// Every node must know the account before a login there can work.
	for _, nd := range c.nodes {
		waitFor(t, 10*time.Second, nd.name+" knows "+acUser, func() error {
			_, err := nd.client().User(ctx(t), acUser)
			return err
		})
	}
	return c
}

var errPortTaken = errors.New("a node could not bind its port")

// startAccessNodes starts the three nodes under dir and waits until they
// are ready; errPortTaken means a node exited because a port was taken.
func startAccessNodes(t *testing.T, dir string, extra []string) (*accessCluster, error) {
	const n = 3
	ports := freePorts(t, 8*n)
	c := &accessCluster{t: t}
	var gossip []string
	for i := range n {
		p := ports[8*i : 8*i+8]
		name := "n" + strconv.Itoa(i+1)
		an := &accessNode{imap: addr(p[4]), imaps: addr(p[5]), pop3: addr(p[6]), pop3s: addr(p[7])}
		flags := append([]string{"--imap-addr", an.imap, "--imaps-addr", an.imaps, "--pop3-addr", an.pop3, "--pop3s-addr", an.pop3s}, extra...)
		an.node = &node{t: t, name: name, dir: filepath.Join(dir, name),
			gossip: addr(p[0]), raft: addr(p[1]), api: addr(p[2]), smtp: addr(p[3]), expect: n, extra: flags}
		c.nodes = append(c.nodes, an)
		gossip = append(gossip, an.gossip)
	}
	for _, nd := range c.nodes {
		nd.join = gossip
		nd.start()
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
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, nd := range c.nodes {
			nd.mu.Lock()
			done := nd.done
			nd.mu.Unlock()
			select {
			case <-done:
				b, _ := os.ReadFile(nd.dir + ".log")
				if strings.Contains(string(b), "address already in use") {
					for _, other := range c.nodes {
						other.kill()
					}
					return nil, fmt.Errorf("%s: %w", nd.name, errPortTaken)
				}
				return nil, fmt.Errorf("%s exited at start", nd.name)
			default:
			}
		}
		var notReady error
		for _, nd := range c.nodes {
			cx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := nd.client().Ready(cx)
			cancel()
			if err != nil {
				notReady = fmt.Errorf("%s: %w", nd.name, err)
				break
			}
		}
		if notReady == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("not ready after 60s: %v", notReady)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c, nil
}

// deliver sends each subject through via's SMTP listener and waits until
// the account's mailbox holds want messages in all (INBOX).
func (c *accessCluster) deliver(via *accessNode, want int, subjects ...string) {
	c.t.Helper()
	for _, s := range subjects {
		code, text, err := send(via.smtp, acSender, []string{acUser}, message(s))
		if err != nil || code != 250 {
			c.t.Fatalf("send %s through %s: %d %s %v", s, via.name, code, text, err)
		}
	}
	c.waitInbox(want)
}

// waitInbox waits until the INBOX holds exactly want messages.
func (c *accessCluster) waitInbox(want int) []api.MessageSummary {
	c.t.Helper()
	var msgs []api.MessageSummary
	waitFor(c.t, 30*time.Second, fmt.Sprintf("%d messages in the INBOX", want), func() error {
		var err error
		msgs, err = c.nodes[1].client().Messages(ctx(c.t), acUser)
		if err != nil {
			return err
		}
		if len(msgs) != want {
			return fmt.Errorf("%d messages", len(msgs))
		}
		return nil
	})
	return msgs
}

// ---- go-imap client ----

func acTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }

// imapLogin connects with STARTTLS and logs in acUser.
func imapLogin(t *testing.T, addr string, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialStartTLS(addr, &imapclient.Options{TLSConfig: acTLS(), UnilateralDataHandler: h})
	if err != nil {
		t.Fatalf("imap dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(acUser, acPass).Wait(); err != nil {
		t.Fatalf("imap login at %s: %v", addr, err)
	}
	return c
}

// imapCode is the response code of an IMAP error, "" if there is none.
func imapCode(err error) imap.ResponseCode {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

// mboxView is what one client on one node saw of a mailbox.
type mboxView struct {
	UIDValidity uint32
	UIDs        []uint32
	Flags       map[uint32][]string // without \Recent
	Sizes       map[uint32]int64
}

func (v mboxView) String() string {
	return fmt.Sprintf("uidvalidity=%d uids=%v flags=%v", v.UIDValidity, v.UIDs, v.Flags)
}

// view selects (read-only) mailbox and reads its UIDs, flags and sizes.
func imapView(t *testing.T, c *imapclient.Client, mailbox string) mboxView {
	t.Helper()
	sel, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("EXAMINE %s: %v", mailbox, err)
	}
	v := mboxView{UIDValidity: sel.UIDValidity, Flags: map[uint32][]string{}, Sizes: map[uint32]int64{}}
	if sel.NumMessages > 0 {
		msgs, err := c.Fetch(acAllSeq(), &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true}).Collect()
		if err != nil {
			t.Fatalf("FETCH %s: %v", mailbox, err)
		}
		for _, m := range msgs {
			u := uint32(m.UID)
			v.UIDs = append(v.UIDs, u)
			var fl []string
			for _, f := range m.Flags {
				if f != "\\Recent" {
					fl = append(fl, string(f))
				}
			}
			slices.Sort(fl)
			v.Flags[u] = fl
			v.Sizes[u] = m.RFC822Size
		}
	}
	if len(v.UIDs) != int(sel.NumMessages) {
		t.Fatalf("%s: EXISTS %d but FETCH 1:* gave %d messages", mailbox, sel.NumMessages, len(v.UIDs))
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatalf("UNSELECT: %v", err)
	}
	return v
}

func acAllSeq() imap.SeqSet {
	var s imap.SeqSet
	s.AddRange(1, 0) // 1:*
	return s
}

// imapBody fetches a message's full text by UID without setting \Seen.
func imapBody(t *testing.T, c *imapclient.Client, uid uint32) string {
	t.Helper()
	sec := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.UIDSetNum(imap.UID(uid)), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil {
		t.Fatalf("UID FETCH %d BODY.PEEK[]: %v", uid, err)
	}
	if len(msgs) != 1 {
		t.Fatalf("UID FETCH %d: %d messages", uid, len(msgs))
	}
	b := msgs[0].FindBodySection(sec)
	if b == nil {
		t.Fatalf("UID FETCH %d: no BODY[] in the answer", uid)
	}
	return string(b)
}

// ---- Python and curl ----

// pyIMAP is Python's imaplib against one node: STARTTLS with an
// unverified context, LOGIN, LIST, SELECT INBOX, SEARCH, UID SEARCH, and
// in "write" mode FETCH BODY[] (sets \Seen), STORE \Seen, COPY and MOVE to
// Archive, STORE \Deleted and EXPUNGE, on the UIDs given. It prints JSON.
const pyIMAP = `
import imaplib, json, re, ssl, sys
host, port, user, pw, mode, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], json.loads(sys.argv[6])
def ok(r):
    typ, data = r
    if typ != 'OK':
        raise SystemExit('%s %r' % (typ, data))
    return data
def uids(data):
    return [int(x) for x in data[0].split()]
out = {}
M = imaplib.IMAP4(host, port, timeout=20)
ok(M.starttls(ssl_context=ssl._create_unverified_context()))
ok(M.login(user, pw))
out['caps'] = sorted(M.capabilities)
boxes = {}
for line in ok(M.list()):
    m = re.match(rb'\((.*?)\) (?:"(?:.|\\\\.)"|NIL) (.*)$', line)
    if not m:
        raise SystemExit('bad LIST line %r' % line)
    boxes[m.group(2).decode().strip('"')] = m.group(1).decode().split()
out['list'] = boxes
out['exists'] = int(ok(M.select('INBOX'))[0])
out['uidvalidity'] = int(M.response('UIDVALIDITY')[1][0])
out['uids'] = uids(ok(M.uid('SEARCH', None, 'ALL')))
out['search'] = uids(ok(M.search(None, 'SUBJECT', args['subject'])))
if mode == 'read':
    d = ok(M.uid('FETCH', str(args['body']), '(BODY.PEEK[])'))
    out['body'] = d[0][1].decode()
else:
    d = ok(M.uid('FETCH', str(args['fetch']), '(BODY[])'))
    out['body'] = d[0][1].decode()
    out['flags_after_fetch'] = ok(M.uid('FETCH', str(args['fetch']), '(FLAGS)'))[0].decode()
    ok(M.uid('STORE', str(args['seen']), '+FLAGS', '(\\Seen)'))
    # uid() keeps only untagged FETCH data; the tagged reply holds COPYUID.
    out['copy'] = ok(M._simple_command('UID', 'COPY', str(args['copy']), 'Archive'))[0].decode()
    out['move'] = ok(M._simple_command('UID', 'MOVE', str(args['move']), 'Archive'))[0].decode()
    out['move_copyuid'] = [x.decode() for x in M.untagged_responses.get('COPYUID', [])]
    ok(M.uid('STORE', str(args['delete']), '+FLAGS', '(\\Deleted)'))
    out['expunged'] = [x.decode() for x in ok(M.expunge()) if x]
    out['uids_after'] = uids(ok(M.uid('SEARCH', None, 'ALL')))
ok(M.close())
M.logout()
print(json.dumps(out))
`

// pyPOP3 is Python's poplib against one node: STLS, USER/PASS, STAT,
// LIST, UIDL, RETR 1 and, given "dele", DELE of that message number,
// then QUIT. It prints JSON.
const pyPOP3 = `
import json, poplib, ssl, sys
host, port, user, pw, dele = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
out = {}
P = poplib.POP3(host, port, timeout=20)
out['stls'] = P.stls(context=ssl._create_unverified_context()).decode()
P.user(user)
out['pass'] = P.pass_(pw).decode()
out['stat'] = list(P.stat())
out['list'] = [l.decode() for l in P.list()[1]]
out['uidl'] = [l.decode() for l in P.uidl()[1]]
out['retr1'] = b'\r\n'.join(P.retr(1)[1]).decode()
if dele:
    out['dele'] = P.dele(dele).decode()
out['quit'] = P.quit().decode()
print(json.dumps(out))
`

// runPython runs a script with arguments and decodes its JSON output.
func runPython(t *testing.T, script string, out any, args ...string) {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	f := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	cx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := exec.CommandContext(cx, py, append([]string{f}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("python %v: %v\n%s", args, err, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("python %v: %v\n%s", args, err, b)
	}
}

// runCurl runs curl with TLS required (STARTTLS/STLS), no certificate
// check, and the account's credentials; it returns the output.
func runCurl(t *testing.T, args ...string) string {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	cx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	all := append([]string{"-sS", "-k", "--ssl-reqd", "--max-time", "30", "-u", acUser + ":" + acPass}, args...)
	b, err := exec.CommandContext(cx, curl, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, b)
	}
	return string(b)
}

func jsonArg(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func hostPort(t *testing.T, a string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// ---- a raw line-oriented connection, for IDLE timing and bad input ----

type textConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// dialText connects to a mail listener, with TLS from the first byte if
// implicitTLS.
func dialText(t *testing.T, addr string, implicitTLS bool) *textConn {
	t.Helper()
	var c net.Conn
	var err error
	if implicitTLS {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, acTLS())
	} else {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &textConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *textConn) send(s string) {
	c.t.Helper()
	_ = c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("write %q: %v", abbrev(s), err)
	}
}

// line reads one line, without its CRLF.
func (c *textConn) line(d time.Duration) (string, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(d))
	s, err := c.r.ReadString('\n')
	if err != nil {
		return s, err
	}
	return strings.TrimRight(s, "\r\n"), nil
}

// expect reads one line and checks that it starts with prefix.
func (c *textConn) expect(prefix string) string {
	c.t.Helper()
	s, err := c.line(10 * time.Second)
	if err != nil {
		c.t.Fatalf("waiting for %q: %v (got %q)", prefix, err, s)
	}
	if !strings.HasPrefix(s, prefix) {
		c.t.Fatalf("got %q, want %q…", s, prefix)
	}
	return s
}

// imap sends "tag cmd" and reads up to the tagged reply, skipping any
// literal in between; it returns the untagged lines and the tagged one.
func (c *textConn) imap(tag, cmd string) ([]string, string) {
	c.t.Helper()
	c.send(tag + " " + cmd + "\r\n")
	return c.imapReply(tag)
}

var literalRe = regexp.MustCompile(`\{(\d+)\}$`)

func (c *textConn) imapReply(tag string) ([]string, string) {
	c.t.Helper()
	var untagged []string
	for {
		s, err := c.line(15 * time.Second)
		if err != nil {
			c.t.Fatalf("waiting for %s's reply: %v (so far %q)", tag, err, untagged)
		}
		if strings.HasPrefix(s, tag+" ") {
			return untagged, s
		}
		if m := literalRe.FindStringSubmatch(s); m != nil {
			n, _ := strconv.Atoi(m[1])
			if _, err := io.CopyN(io.Discard, c.r, int64(n)); err != nil {
				c.t.Fatal(err)
			}
		}
		untagged = append(untagged, s)
	}
}

// closed reads until the server closes the connection and returns what it
// said before closing.
func (c *textConn) closed(d time.Duration) []string {
	c.t.Helper()
	var got []string
	for {
		s, err := c.line(d)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatalf("connection still open after %v; it said %q", d, got)
			}
			if s != "" {
				got = append(got, s)
			}
			return got
		}
		got = append(got, s)
	}
}

// ---- tests ----

// TestAccessEveryNode reads one account's mail on each of the three nodes
// with five clients, changes it through the non-owners, and checks that
// every node, through every client, shows the same mailboxes: the same
// UIDVALIDITY, UIDs, flags and POP3 UIDLs.
func TestAccessEveryNode(t *testing.T) {
	c := newAccessCluster(t, 0)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	subjects := []string{"m1", "m2", "m3", "m4", "m5", "m6"}
	c.deliver(n3, len(subjects), subjects...)

	// Read everything on every node, changing nothing but \Seen on the
	// first and last messages (curl's FETCH and RETR read without PEEK).
	var ref *mboxView
	for _, nd := range c.nodes {
		t.Logf("reading through %s", nd.name)
		// go-imap v2, IMAP4rev2 enabled.
		gc := imapLogin(t, nd.imap, nil)
		if !gc.Caps().Has(imap.CapIMAP4rev2) {
			t.Fatalf("%s: IMAP4rev2 not advertised: %v", nd.name, gc.Caps())
		}
		en, err := gc.Enable(imap.CapIMAP4rev2).Wait()
		if err != nil || !en.Caps.Has(imap.CapIMAP4rev2) {
			t.Fatalf("%s: ENABLE IMAP4rev2: %v %v", nd.name, en, err)
		}
		boxes, err := gc.List("", "*", &imap.ListOptions{ReturnSpecialUse: true}).Collect()
		if err != nil {
			t.Fatalf("%s: LIST: %v", nd.name, err)
		}
		gotBoxes := map[string][]string{}
		for _, b := range boxes {
			for _, a := range b.Attrs {
				gotBoxes[b.Mailbox] = append(gotBoxes[b.Mailbox], string(a))
			}
			if _, ok := gotBoxes[b.Mailbox]; !ok {
				gotBoxes[b.Mailbox] = nil
			}
		}
		checkSpecialUse(t, nd.name+" go-imap", gotBoxes)
		v := imapView(t, gc, "INBOX")
		if len(v.UIDs) != len(subjects) {
			t.Fatalf("%s: INBOX %v, want %d messages", nd.name, v, len(subjects))
		}
		if _, err := gc.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			t.Fatal(err)
		}
		for i, u := range v.UIDs {
			if b := imapBody(t, gc, u); !strings.Contains(b, "Subject: "+subjects[i]+"\r\n") || !strings.Contains(b, "by n3.test") {
				t.Fatalf("%s: UID %d is not %s received by n3:\n%s", nd.name, u, subjects[i], b)
			}
		}
		if err := gc.Logout().Wait(); err != nil {
			t.Fatalf("%s: LOGOUT: %v", nd.name, err)
		}

		if ref == nil {
			ref = &v
		} else if v.UIDValidity != ref.UIDValidity || !slices.Equal(v.UIDs, ref.UIDs) {
			t.Fatalf("%s sees INBOX %v, %s saw %v", nd.name, v, n1.name, *ref)
		}

		// Python imaplib.
		host, port := hostPort(t, nd.imap)
		var py struct {
			Caps        []string            `json:"caps"`
			List        map[string][]string `json:"list"`
			Exists      int                 `json:"exists"`
			UIDValidity uint32              `json:"uidvalidity"`
			UIDs        []uint32            `json:"uids"`
			Search      []int               `json:"search"`
			Body        string              `json:"body"`
		}
		runPython(t, pyIMAP, &py, host, port, acUser, acPass, "read", jsonArg(map[string]any{"subject": "m4", "body": v.UIDs[1]}))
		checkSpecialUse(t, nd.name+" imaplib", py.List)
		if py.UIDValidity != ref.UIDValidity || !slices.Equal(py.UIDs, ref.UIDs) || py.Exists != len(subjects) {
			t.Fatalf("%s imaplib: uidvalidity %d uids %v exists %d; want %v", nd.name, py.UIDValidity, py.UIDs, py.Exists, *ref)
		}
		if !slices.Equal(py.Search, []int{4}) {
			t.Fatalf("%s imaplib: SEARCH SUBJECT m4 = %v, want [4]", nd.name, py.Search)
		}
		if !strings.Contains(py.Body, "Subject: m2\r\n") {
			t.Fatalf("%s imaplib: BODY[] of UID %d:\n%s", nd.name, v.UIDs[1], py.Body)
		}

		// Python poplib.
		host, port = hostPort(t, nd.pop3)
		var pop struct {
			Stat []int64  `json:"stat"`
			List []string `json:"list"`
			UIDL []string `json:"uidl"`
			Retr string   `json:"retr1"`
			Quit string   `json:"quit"`
		}
		runPython(t, pyPOP3, &pop, host, port, acUser, acPass, "0")
		var total int64
		var wantList, wantUIDL []string
		for i, u := range ref.UIDs {
			total += v.Sizes[u]
			wantList = append(wantList, fmt.Sprintf("%d %d", i+1, v.Sizes[u]))
			wantUIDL = append(wantUIDL, fmt.Sprintf("%d %d.%d", i+1, ref.UIDValidity, u))
		}
		if len(pop.Stat) != 2 || pop.Stat[0] != int64(len(subjects)) || pop.Stat[1] != total {
			t.Fatalf("%s poplib: STAT %v, want %d %d", nd.name, pop.Stat, len(subjects), total)
		}
		if !slices.Equal(pop.List, wantList) || !slices.Equal(pop.UIDL, wantUIDL) {
			t.Fatalf("%s poplib: LIST %q UIDL %q, want %q %q", nd.name, pop.List, pop.UIDL, wantList, wantUIDL)
		}
		if !strings.Contains(pop.Retr, "Subject: m1\r\n") || !strings.HasPrefix(pop.Quit, "+OK") {
			t.Fatalf("%s poplib: RETR 1 %q, QUIT %q", nd.name, pop.Retr, pop.Quit)
		}

		// curl, both protocols.
		base := "imap://" + nd.imap
		if out := runCurl(t, base+"/"); !containsAll(out, `\Sent`, `\Drafts`, `\Trash`, `\Junk`, `\Archive`, "INBOX") {
			t.Fatalf("%s curl LIST:\n%s", nd.name, out)
		}
		if out := runCurl(t, base+"/INBOX", "-X", "UID SEARCH ALL"); strings.TrimSpace(out) != "* SEARCH "+joinUIDs(ref.UIDs) {
			t.Fatalf("%s curl UID SEARCH ALL: %q, want UIDs %v", nd.name, out, ref.UIDs)
		}
		if out := runCurl(t, fmt.Sprintf("%s/INBOX;UIDVALIDITY=%d/;UID=%d", base, ref.UIDValidity, ref.UIDs[0])); !strings.Contains(out, "Subject: m1\r\n") {
			t.Fatalf("%s curl UID FETCH:\n%s", nd.name, out)
		}
		pbase := "pop3://" + nd.pop3
		if out := runCurl(t, pbase+"/"); strings.Join(strings.Fields(out), " ") != strings.Join(wantList, " ") {
			t.Fatalf("%s curl pop3 LIST: %q, want %q", nd.name, out, wantList)
		}
		if out := runCurl(t, pbase+"/", "-X", "UIDL"); strings.Join(strings.Fields(out), " ") != strings.Join(wantUIDL, " ") {
			t.Fatalf("%s curl pop3 UIDL: %q, want %q", nd.name, out, wantUIDL)
		}
		if out := runCurl(t, pbase+"/6"); !strings.Contains(out, "Subject: m6\r\n") {
			t.Fatalf("%s curl pop3 RETR 6:\n%s", nd.name, out)
		}
	}

	// Change the mailbox through n2 with imaplib: FETCH BODY[] of m1 (sets
	// \Seen, already set by RETR), STORE \Seen on m2, COPY m1 and MOVE m3
	// to Archive, delete and expunge m4.
	u := ref.UIDs
	host, port := hostPort(t, n2.imap)
	var w struct {
		Body       string   `json:"body"`
		FlagsFetch string   `json:"flags_after_fetch"`
		Copy       string   `json:"copy"`
		Move       string   `json:"move"`
		MoveUID    []string `json:"move_copyuid"`
		Expunged   []string `json:"expunged"`
		After      []uint32 `json:"uids_after"`
	}
	runPython(t, pyIMAP, &w, host, port, acUser, acPass, "write",
		jsonArg(map[string]any{"subject": "m1", "fetch": u[0], "seen": u[1], "copy": u[0], "move": u[2], "delete": u[3]}))
	if !strings.Contains(w.Body, "Subject: m1\r\n") || !strings.Contains(w.FlagsFetch, `\Seen`) {
		t.Fatalf("imaplib on n2: BODY[] %q, FLAGS %q", abbrev(w.Body), w.FlagsFetch)
	}
	if !strings.Contains(w.Copy, "COPYUID") {
		t.Errorf("imaplib on n2: COPY answered %q, want COPYUID (UIDPLUS)", w.Copy)
	}
	// imaplib collects the codes of COPY's tagged OK and MOVE's untagged
	// OK under one key: two COPYUIDs, the second one MOVE's.
	if len(w.MoveUID) != 2 || len(strings.Fields(w.MoveUID[1])) != 3 || strings.Fields(w.MoveUID[1])[1] != strconv.Itoa(int(u[2])) {
		t.Errorf("imaplib on n2: COPYUID codes %q, want COPY's and then MOVE's of UID %d", w.MoveUID, u[2])
	}
	if want := []uint32{u[0], u[1], u[4], u[5]}; !slices.Equal(w.After, want) {
		t.Fatalf("imaplib on n2: UIDs after MOVE and EXPUNGE %v, want %v", w.After, want)
	}

	// Delete m5 through n3 with poplib (message 3 of 4 now).
	host, port = hostPort(t, n3.pop3)
	var pd struct {
		UIDL []string `json:"uidl"`
		Dele string   `json:"dele"`
		Quit string   `json:"quit"`
	}
	runPython(t, pyPOP3, &pd, host, port, acUser, acPass, "3")
	if want := fmt.Sprintf("3 %d.%d", ref.UIDValidity, u[4]); len(pd.UIDL) != 4 || pd.UIDL[2] != want {
		t.Fatalf("poplib on n3: UIDL %q, want message 3 to be %q", pd.UIDL, want)
	}
	if !strings.HasPrefix(pd.Dele, "+OK") || !strings.HasPrefix(pd.Quit, "+OK") {
		t.Fatalf("poplib on n3: DELE %q QUIT %q", pd.Dele, pd.Quit)
	}

	// Flag m6 through the owner with go-imap, then every node must show
	// the same INBOX and Archive.
	gc := imapLogin(t, n1.imap, nil)
	if _, err := gc.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := gc.Store(imap.UIDSetNum(imap.UID(u[5])), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err != nil {
		t.Fatalf("UID STORE on n1: %v", err)
	}
	gc.Logout().Wait()

	wantInbox := mboxView{UIDValidity: ref.UIDValidity, UIDs: []uint32{u[0], u[1], u[5]},
		Flags: map[uint32][]string{u[0]: {`\Seen`}, u[1]: {`\Seen`}, u[5]: {`\Flagged`, `\Seen`}}}
	var archive *mboxView
	for _, nd := range c.nodes {
		gc := imapLogin(t, nd.imap, nil)
		in := imapView(t, gc, "INBOX")
		if in.UIDValidity != wantInbox.UIDValidity || !slices.Equal(in.UIDs, wantInbox.UIDs) || !equalFlags(in.Flags, wantInbox.Flags) {
			t.Fatalf("%s: INBOX %v, want %v", nd.name, in, wantInbox)
		}
		ar := imapView(t, gc, "Archive")
		if len(ar.UIDs) != 2 || ar.UIDValidity == 0 {
			t.Fatalf("%s: Archive %v, want m1 and m3", nd.name, ar)
		}
		if archive == nil {
			archive = &ar
			if _, err := gc.Select("Archive", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
				t.Fatal(err)
			}
			subj := []string{"m1", "m3"}
			for i, au := range ar.UIDs {
				if b := imapBody(t, gc, au); !strings.Contains(b, "Subject: "+subj[i]+"\r\n") {
					t.Fatalf("%s: Archive UID %d is not %s:\n%s", nd.name, au, subj[i], b)
				}
			}
		} else if ar.UIDValidity != archive.UIDValidity || !slices.Equal(ar.UIDs, archive.UIDs) || !equalFlags(ar.Flags, archive.Flags) {
			t.Fatalf("%s: Archive %v, %s saw %v", nd.name, ar, n1.name, *archive)
		}
		gc.Logout().Wait()
	}
	appendLarge(t, c)
	// m6 was retrieved over POP3 by curl: \Seen. m2 got \Seen from STORE.
	// The API, served by the owner, agrees.
	msgs := c.waitInbox(3)
	for i, want := range []string{"m1", "m2", "m6"} {
		if msgs[i].Subject != want || msgs[i].UID != wantInbox.UIDs[i] {
			t.Fatalf("API: message %d is UID %d %q, want UID %d %q", i, msgs[i].UID, msgs[i].Subject, wantInbox.UIDs[i], want)
		}
	}
}

// A large message appended through a non-owner reads back byte for byte
// through the other non-owner and the owner.
func appendLarge(t *testing.T, c *accessCluster) {
	t.Helper()
	var b strings.Builder
	b.WriteString("From: " + acUser + "\r\nSubject: large draft\r\n\r\n")
	for i := 0; b.Len() < 3<<20; i++ {
		fmt.Fprintf(&b, "line %07d %s\r\n", i, strings.Repeat("abcdefghij", 7))
	}
	msg := b.String()
	gc := imapLogin(t, c.nodes[1].imap, nil)
	ap := gc.Append("Drafts", int64(len(msg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDraft}})
	if _, err := io.WriteString(ap, msg); err != nil {
		t.Fatal(err)
	}
	if err := ap.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := ap.Wait()
	if err != nil || res.UID == 0 {
		t.Fatalf("APPEND of %d bytes on n2: %v %v", len(msg), res, err)
	}
	for _, nd := range []*accessNode{c.nodes[2], c.nodes[0]} {
		rc := imapLogin(t, nd.imap, nil)
		sel, err := rc.Select("Drafts", &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil || sel.UIDValidity != res.UIDValidity {
			t.Fatalf("EXAMINE Drafts on %s: %v %v, APPENDUID said UIDVALIDITY %d", nd.name, sel, err, res.UIDValidity)
		}
		if got := imapBody(t, rc, uint32(res.UID)); got != msg {
			t.Fatalf("%s: the %d-byte draft reads back as %d bytes", nd.name, len(msg), len(got))
		}
		rc.Logout().Wait()
	}
}

// checkSpecialUse checks that a LIST shows the six standard mailboxes,
// each with its special-use attribute (RFC 6154).
func checkSpecialUse(t *testing.T, who string, boxes map[string][]string) {
	t.Helper()
	want := map[string]string{"INBOX": "", "Sent": `\Sent`, "Drafts": `\Drafts`, "Trash": `\Trash`, "Junk": `\Junk`, "Archive": `\Archive`}
	for name, attr := range want {
		attrs, ok := boxes[name]
		if !ok {
			t.Fatalf("%s: LIST lacks %s: %v", who, name, boxes)
		}
		if attr != "" && !slices.ContainsFunc(attrs, func(a string) bool { return strings.EqualFold(a, attr) }) {
			t.Fatalf("%s: LIST shows %s with %v, want %s", who, name, attrs, attr)
		}
	}
}

func equalFlags(a, b map[uint32][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

func joinUIDs(u []uint32) string {
	var s []string
	for _, x := range u {
		s = append(s, strconv.FormatUint(uint64(x), 10))
	}
	return strings.Join(s, " ")
}

// TestAccessIdlePush keeps IDLE sessions on the three nodes (go-imap on
// n2, raw sockets on n1, the owner, and on n3) while mail comes in
// through n3's SMTP: each session must get its EXISTS within a couple of
// seconds of the SMTP 250, through the owner's change stream for n2 and n3.
func TestAccessIdlePush(t *testing.T) {
	c := newAccessCluster(t, 0)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	c.deliver(n3, 1, "first")

	// go-imap on n2.
	exists := make(chan uint32, 16)
	expunged := make(chan uint32, 16)
	flagged := make(chan string, 16)
	gc := imapLogin(t, n2.imap, &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
		Expunge: func(seq uint32) { expunged <- seq },
		Fetch: func(m *imapclient.FetchMessageData) {
			b, err := m.Collect()
			if err == nil {
				flagged <- fmt.Sprintf("%d %v", b.SeqNum, b.Flags)
			}
		},
	})
	if sel, err := gc.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != 1 {
		t.Fatalf("SELECT on n2: %v %v", sel, err)
	}
	idle, err := gc.Idle()
	if err != nil {
		t.Fatal(err)
	}

	// Raw IDLE on the owner (local store) and on n3 (remote, like n2).
	type rawIdle struct {
		name  string
		lines chan string
	}
	var raws []rawIdle
	for _, nd := range []*accessNode{n1, n3} {
		rc := dialText(t, nd.imaps, true)
		rc.expect("* OK")
		if _, tagged := rc.imap("a", "LOGIN "+imapQuote(acUser)+" "+imapQuote(acPass)); !strings.HasPrefix(tagged, "a OK") {
			t.Fatalf("%s LOGIN: %s", nd.name, tagged)
		}
		if _, tagged := rc.imap("b", "SELECT INBOX"); !strings.HasPrefix(tagged, "b OK") {
			t.Fatalf("%s SELECT: %s", nd.name, tagged)
		}
		rc.send("c IDLE\r\n")
		rc.expect("+ ")
		lines := make(chan string, 64)
		go func() {
			defer close(lines)
			for {
				_ = rc.c.SetReadDeadline(time.Now().Add(2 * time.Minute))
				s, err := rc.r.ReadString('\n')
				if err != nil {
					return
				}
				lines <- strings.TrimRight(s, "\r\n")
			}
		}()
		raws = append(raws, rawIdle{nd.name, lines})
	}

	const limit = 3 * time.Second
	for i := 2; i <= 4; i++ {
		subject := fmt.Sprintf("push%d", i)
		// Timed from before the SMTP session, whose 250 comes at its
		// end: an upper bound of the delay after the 250.
		accepted := time.Now()
		code, text, err := send(n3.smtp, acSender, []string{acUser}, message(subject))
		if err != nil || code != 250 {
			t.Fatalf("send %s: %d %s %v", subject, code, text, err)
		}
		deadline := time.NewTimer(limit)
	wait:
		for {
			select {
			case n := <-exists:
				if n == uint32(i) {
					t.Logf("n2 (go-imap): * %d EXISTS at most %v after the 250", n, time.Since(accepted).Round(time.Millisecond))
					break wait
				}
			case <-deadline.C:
				t.Fatalf("n2 (go-imap): no * %d EXISTS within %v of the 250", i, limit)
			}
		}
		for _, r := range raws {
			want := fmt.Sprintf("* %d EXISTS", i)
		rawWait:
			for {
				select {
				case s, ok := <-r.lines:
					if !ok {
						t.Fatalf("%s: IDLE connection closed", r.name)
					}
					if s == want {
						t.Logf("%s (raw): %s at most %v after the 250", r.name, s, time.Since(accepted).Round(time.Millisecond))
						break rawWait
					}
				case <-deadline.C:
					t.Fatalf("%s (raw): no %q within %v of the 250", r.name, want, limit)
				}
			}
		}
		deadline.Stop()
	}

	// Other changes are pushed too: a flag set through the owner, a
	// message deleted over POP3 through n3.
	ic := imapLogin(t, n1.imap, nil)
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err != nil {
		t.Fatalf("STORE on n1: %v", err)
	}
	changed := time.Now()
	select {
	case f := <-flagged:
		if f != `1 [\Flagged]` {
			t.Fatalf("n2 (go-imap): FETCH %s, want message 1 \\Flagged", f)
		}
		t.Logf("n2 (go-imap): FETCH %s %v after the STORE on n1", f, time.Since(changed).Round(time.Millisecond))
	case <-time.After(limit):
		t.Fatalf("n2 (go-imap): no FETCH FLAGS within %v of the STORE on n1", limit)
	}
	pop := dialText(t, n3.pop3s, true)
	pop.expect("+OK")
	pop.send("USER " + acUser + "\r\nPASS " + acPass + "\r\nDELE 2\r\nQUIT\r\n")
	pop.expect("+OK")
	pop.expect("+OK maildrop has 4 messages")
	pop.expect("+OK")
	pop.expect("+OK")
	changed = time.Now()
	select {
	case seq := <-expunged:
		if seq != 2 {
			t.Fatalf("n2 (go-imap): * %d EXPUNGE, want 2", seq)
		}
		t.Logf("n2 (go-imap): * 2 EXPUNGE %v after the POP3 QUIT on n3", time.Since(changed).Round(time.Millisecond))
	case <-time.After(limit):
		t.Fatalf("n2 (go-imap): no EXPUNGE within %v of the POP3 QUIT on n3", limit)
	}
	for _, r := range raws {
		// POP3's QUIT flags \Deleted, then expunges: the session may be
		// told of both steps.
		var got []string
		for len(got) == 0 || got[len(got)-1] != "* 2 EXPUNGE" {
			select {
			case s := <-r.lines:
				got = append(got, s)
			case <-time.After(limit):
				t.Fatalf("%s (raw): %q, want a FETCH and an EXPUNGE", r.name, got)
			}
		}
		if !strings.HasPrefix(got[0], "* 1 FETCH (") || !strings.Contains(got[0], `FLAGS (\Flagged)`) || len(got) > 3 ||
			len(got) == 3 && !strings.HasPrefix(got[1], "* 2 FETCH (") {
			t.Fatalf("%s (raw): %q, want FETCH FLAGS of 1 and EXPUNGE of 2", r.name, got)
		}
	}

	// The go-imap session ends IDLE and reads the new messages.
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatalf("IDLE on n2: %v", err)
	}
	if got := gc.Mailbox().NumMessages; got != 3 {
		t.Fatalf("n2 client counts %d messages, want 3", got)
	}
	res, err := gc.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "push4"}}}, nil).Wait()
	if err != nil || len(res.AllUIDs()) != 1 {
		t.Fatalf("UID SEARCH SUBJECT push4 on n2: %v %v", res, err)
	}
	if b := imapBody(t, gc, uint32(res.AllUIDs()[0])); !strings.Contains(b, "Subject: push4\r\n") {
		t.Fatalf("push4 on n2:\n%s", b)
	}
}

// imapQuote makes an IMAP quoted string.
func imapQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// TestAccessOwnerDown kills the node owning the mailbox under sessions
// logged in elsewhere: IMAP answers NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP]
// (and deletes nothing), logins on other nodes are refused the same way;
// mail sent meanwhile gets its 250 and arrives once the owner is back,
// when the same IMAP sessions, idle or not, carry on.
func TestAccessOwnerDown(t *testing.T) {
	c := newAccessCluster(t, 0)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	c.deliver(n3, 2, "before1", "before2")

	// An IMAP session on n2 with INBOX selected.
	gc := imapLogin(t, n2.imap, nil)
	sel, err := gc.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 2 {
		t.Fatalf("SELECT on n2: %v %v", sel, err)
	}
	before := imapView(t, gc, "INBOX")
	if _, err := gc.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	// An IDLE session on n3 over implicit TLS.
	idler := dialText(t, n3.imaps, true)
	idler.expect("* OK")
	if _, tagged := idler.imap("a", "LOGIN "+imapQuote(acUser)+" "+imapQuote(acPass)); !strings.HasPrefix(tagged, "a OK") {
		t.Fatalf("LOGIN on n3: %s", tagged)
	}
	if _, tagged := idler.imap("b", "SELECT INBOX"); !strings.HasPrefix(tagged, "b OK") {
		t.Fatalf("SELECT on n3: %s", tagged)
	}
	idler.send("c IDLE\r\n")
	idler.expect("+ ")

	// A POP3 session on n3 that marks message 1 deleted.
	pop := dialText(t, n3.pop3s, true)
	pop.expect("+OK")
	pop.send("USER " + acUser + "\r\n")
	pop.expect("+OK")
	pop.send("PASS " + acPass + "\r\n")
	pop.expect("+OK maildrop has 2 messages")
	pop.send("DELE 1\r\n")
	pop.expect("+OK")

	n1.kill()

	// The next IMAP command on n2 is refused as temporary.
	_, err = gc.Fetch(acAllSeq(), &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if imapCode(err) != imap.ResponseCodeUnavailable {
		t.Fatalf("FETCH on n2 with the owner down: %v, want NO [UNAVAILABLE]", err)
	}
	if _, err := gc.UIDSearch(&imap.SearchCriteria{}, nil).Wait(); imapCode(err) != imap.ResponseCodeUnavailable {
		t.Fatalf("UID SEARCH on n2 with the owner down: %v, want NO [UNAVAILABLE]", err)
	}
	if st, err := gc.Status("Archive", &imap.StatusOptions{NumMessages: true}).Wait(); imapCode(err) != imap.ResponseCodeUnavailable {
		t.Fatalf("STATUS on n2 with the owner down: %v %v, want NO [UNAVAILABLE]", st, err)
	}

	// POP3: the session cannot read, and QUIT deletes nothing (it says so).
	pop.send("RETR 2\r\n")
	pop.expect("-ERR [SYS/TEMP]")
	pop.send("QUIT\r\n")
	pop.expect("-ERR [SYS/TEMP]")
	pop.closed(10 * time.Second)

	// New logins on the non-owners: POP3 refused at PASS, IMAP at LOGIN or
	// at SELECT, both as temporary.
	for _, nd := range []*accessNode{n2, n3} {
		p := dialText(t, nd.pop3s, true)
		p.expect("+OK")
		p.send("USER " + acUser + "\r\n")
		p.expect("+OK")
		p.send("PASS " + acPass + "\r\n")
		p.expect("-ERR [SYS/TEMP]")
		p.send("STAT\r\n") // still in AUTHORIZATION
		p.expect("-ERR")
		p.send("QUIT\r\n")
		p.expect("+OK")

		ic, err := imapclient.DialStartTLS(nd.imap, &imapclient.Options{TLSConfig: acTLS()})
		if err != nil {
			t.Fatal(err)
		}
		err = ic.Login(acUser, acPass).Wait()
		if err == nil {
			_, err = ic.Select("INBOX", nil).Wait()
		}
		if imapCode(err) != imap.ResponseCodeUnavailable {
			t.Fatalf("new IMAP session on %s with the owner down: %v, want NO [UNAVAILABLE]", nd.name, err)
		}
		ic.Close()
	}

	// Mail sent meanwhile is accepted (the cluster may first need a new
	// leader: until then the answer is a 4xx and the client retries).
	for i, via := range []*accessNode{n3, n2} {
		subject := fmt.Sprintf("during%d", i+1)
		waitFor(t, 30*time.Second, subject+" accepted", func() error {
			code, text, err := send(via.smtp, acSender, []string{acUser}, message(subject))
			if err != nil {
				return err
			}
			if code != 250 {
				if code/100 != 4 {
					t.Fatalf("send %s through %s: %d %s", subject, via.name, code, text)
				}
				return fmt.Errorf("%d %s", code, text)
			}
			return nil
		})
	}

	n1.start()
	n1.waitReady(60 * time.Second)
	msgs := c.waitInbox(4)
	var got []string
	for _, m := range msgs {
		got = append(got, m.Subject)
	}
	slices.Sort(got) // the two queued while the owner was down arrive in either order
	if want := []string{"before1", "before2", "during1", "during2"}; !slices.Equal(got, want) {
		t.Fatalf("INBOX after the restart: %q, want %q (nothing lost, nothing twice)", got, want)
	}

	// The same IMAP session on n2 works again and has been told of the
	// new messages.
	waitFor(t, 30*time.Second, "the n2 session to work again", func() error {
		res, err := gc.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
		if err != nil {
			return err
		}
		if n := len(res.AllUIDs()); n != 4 {
			return fmt.Errorf("UID SEARCH ALL: %d UIDs", n)
		}
		return nil
	})
	if n := gc.Mailbox().NumMessages; n != 4 {
		t.Fatalf("the n2 session counts %d messages (EXISTS), want 4", n)
	}
	after := imapView(t, gc, "INBOX")
	if after.UIDValidity != before.UIDValidity || !slices.Equal(after.UIDs[:2], before.UIDs) {
		t.Fatalf("INBOX before the crash %v, after %v", before, after)
	}

	// The IDLE session on n3 is told too, without a new command.
	waitFor(t, 30*time.Second, "* 4 EXISTS in the IDLE session on n3", func() error {
		s, err := idler.line(200 * time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return errors.New("nothing yet")
			}
			t.Fatalf("IDLE session on n3: %v", err)
		}
		if s != "* 4 EXISTS" {
			t.Logf("IDLE session on n3: %s", s)
			return fmt.Errorf("got %q", s)
		}
		return nil
	})
	idler.send("DONE\r\n")
	if _, tagged := idler.imapReply("c"); !strings.HasPrefix(tagged, "c OK") {
		t.Fatalf("IDLE on n3 ended with %q", tagged)
	}
	if _, tagged := idler.imap("d", "LOGOUT"); !strings.HasPrefix(tagged, "d OK") {
		t.Fatalf("LOGOUT on n3: %s", tagged)
	}

	// A new POP3 login on n2 sees all four: the DELE of the session cut
	// off by the crash was not applied.
	host, port := hostPort(t, n2.pop3)
	var p struct {
		Stat []int64  `json:"stat"`
		UIDL []string `json:"uidl"`
		Quit string   `json:"quit"`
	}
	runPython(t, pyPOP3, &p, host, port, acUser, acPass, "0")
	if len(p.Stat) != 2 || p.Stat[0] != 4 || len(p.UIDL) != 4 || p.UIDL[0] != fmt.Sprintf("1 %d.%d", before.UIDValidity, before.UIDs[0]) {
		t.Fatalf("POP3 on n2 after the restart: STAT %v UIDL %q", p.Stat, p.UIDL)
	}
}

// bigMessage is a message of about size bytes.
func bigMessage(subject string, size int) string {
	var b strings.Builder
	b.WriteString(message(subject))
	line := strings.Repeat("x", 76) + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.String()
}

// TestAccessQuota fills an account with a 10 KiB quota: SMTP still answers
// 250 beyond it but the delivery waits in the queue (452 4.2.2), IMAP
// APPEND and COPY are refused with [OVERQUOTA], the stats show usage
// against the quota; once messages are expunged over IMAP and the queue
// is retried, the waiting message arrives.
func TestAccessQuota(t *testing.T) {
	const quota = 10 << 10
	c := newAccessCluster(t, quota, "--retry-schedule", "1s")
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	for _, s := range []string{"q1", "q2"} {
		if code, text, err := send(n3.smtp, acSender, []string{acUser}, bigMessage(s, 4000)); err != nil || code != 250 {
			t.Fatalf("send %s: %d %s %v", s, code, text, err)
		}
	}
	msgs := c.waitInbox(2)
	used := msgs[0].Size + msgs[1].Size
	if used > quota || used+msgs[0].Size <= quota {
		t.Fatalf("test sizes: two messages use %d bytes; a third must not fit in %d", used, quota)
	}

	// A third one is accepted, then deferred for the full mailbox.
	code, text, err := send(n3.smtp, acSender, []string{acUser}, bigMessage("q3", 4000))
	if err != nil || code != 250 {
		t.Fatalf("send q3: %d %s %v", code, text, err)
	}
	var id string
	waitFor(t, 30*time.Second, "q3 deferred twice with 452 4.2.2", func() error {
		q, err := n2.client().Queue(ctx(t))
		if err != nil {
			return err
		}
		if len(q) != 1 {
			return fmt.Errorf("queue %+v", q)
		}
		id = q[0].ID
		e, err := n2.client().QueueEntry(ctx(t), id)
		if err != nil {
			return err
		}
		r := e.Recipients[0]
		if r.Addr != acUser || r.State != "pending" || !strings.HasPrefix(r.LastReply, "452 4.2.2") || r.Attempts < 2 {
			return fmt.Errorf("recipient %+v", r)
		}
		return nil
	})
	if out, err := cli(t, n1.node, "queue", "show", id); err != nil || !strings.Contains(out, "452 4.2.2") || !strings.Contains(out, acUser) {
		t.Fatalf("queue show %s: %v\n%s", id, err, out)
	}
	c.waitInbox(2)

	// Usage against the quota, from the API, the CLI and IMAP.
	st, err := n3.client().MailboxStats(ctx(t), acUser)
	if err != nil {
		t.Fatal(err)
	}
	if st.Node != "n1" || st.Quota != quota || st.Messages != 2 || st.Bytes != used {
		t.Fatalf("mailbox stats %+v, want 2 messages, %d of %d bytes on n1", st, used, quota)
	}
	out, err := cli(t, n2.node, "mailbox", "stats", acUser)
	if err != nil {
		t.Fatalf("mailbox stats: %v\n%s", err, out)
	}
	pct := fmt.Sprintf("of 10KiB (%.0f%%)", 100*float64(used)/quota)
	if !containsAll(out, acUser, "n1", pct, "INBOX", "Archive") {
		t.Fatalf("mailbox stats output lacks %q:\n%s", pct, out)
	}
	gc := imapLogin(t, n2.imap, nil)
	qs, err := gc.GetQuotaRoot("INBOX").Wait()
	if err != nil || len(qs) != 1 {
		t.Fatalf("GETQUOTAROOT INBOX on n2: %v %v", qs, err)
	}
	if r := qs[0].Resources[imap.QuotaResourceStorage]; r.Limit != quota/1024 || r.Usage != (used+1023)/1024 && r.Usage != used/1024 {
		t.Fatalf("GETQUOTAROOT on n2: STORAGE %d of %d KiB, want %d bytes of 10 KiB", r.Usage, r.Limit, used)
	}

	// APPEND and COPY beyond the quota are refused, on a non-owner and on
	// the owner.
	for _, ic := range []*imapclient.Client{gc, imapLogin(t, n1.imap, nil)} {
		msg := bigMessage("appended", 4000)
		ap := ic.Append("INBOX", int64(len(msg)), nil)
		if _, err := io.WriteString(ap, msg); err != nil {
			t.Fatal(err)
		}
		if err := ap.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := ap.Wait(); imapCode(err) != imap.ResponseCodeOverQuota {
			t.Fatalf("APPEND over quota: %v, want NO [OVERQUOTA]", err)
		}
		if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if _, err := ic.Copy(imap.SeqSetNum(1), "Archive").Wait(); imapCode(err) != imap.ResponseCodeOverQuota {
			t.Fatalf("COPY over quota: %v, want NO [OVERQUOTA]", err)
		}
	}
	c.waitInbox(2)

	// Free space over IMAP on n2, retry the queue, and q3 arrives.
	if _, err := gc.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatalf("STORE \\Deleted on n2: %v", err)
	}
	if exp, err := gc.Expunge().Collect(); err != nil || !slices.Equal(exp, []uint32{1}) {
		t.Fatalf("EXPUNGE on n2: %v %v", exp, err)
	}
	if out, err := cli(t, n3.node, "queue", "retry", "--all"); err != nil {
		t.Fatalf("queue retry --all: %v\n%s", err, out)
	}
	msgs = c.waitInbox(2)
	if msgs[0].Subject != "q2" || msgs[1].Subject != "q3" {
		t.Fatalf("INBOX %+v, want q2 and q3", msgs)
	}
	waitFor(t, 30*time.Second, "an empty queue", func() error {
		q, err := n1.client().Queue(ctx(t))
		if err != nil {
			return err
		}
		if len(q) != 0 {
			return fmt.Errorf("queue %+v", q)
		}
		return nil
	})
	st, err = n2.client().MailboxStats(ctx(t), acUser)
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 2 || st.Bytes != msgs[0].Size+msgs[1].Size {
		t.Fatalf("mailbox stats after the retry: %+v", st)
	}
}

// TestAccessPortInUse starts a node whose IMAP, POP3 or API port is taken:
// it must exit at once with the reason, not hang (the SMTP listener
// started before it used to keep the process waiting forever) nor panic
// (the clean-up of a failed start used to dereference a nil node).
func TestAccessPortInUse(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().String()
	for _, tc := range []struct{ name, flag string }{
		{"gossip", "--gossip-addr"}, {"imap", "--imap-addr"}, {"pop3", "--pop3-addr"}, {"api", "--api-addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := freePorts(t, 6)
			flags := map[string]string{"--gossip-addr": addr(p[0]), "--raft-addr": addr(p[1]), "--api-addr": addr(p[2]),
				"--smtp-addr": addr(p[3]), "--imap-addr": addr(p[4]), "--pop3-addr": addr(p[5])}
			flags[tc.flag] = busy
			args := []string{"server", "--name", "n1", "--data-dir", t.TempDir(), "--bootstrap-expect", "1", "--insecure-auth"}
			for f, v := range flags {
				args = append(args, f, v)
			}
			cx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(cx, binary, args...).CombinedOutput()
			if cx.Err() != nil {
				t.Fatalf("still running after 20s with %s taken:\n%s", tc.flag, out)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "address already in use") || strings.Contains(string(out), "panic") {
				t.Fatalf("with %s taken: %v\n%s", tc.flag, err, out)
			}
		})
	}
}
