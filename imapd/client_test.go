package imapd

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestGoIMAPClient runs the commands through go-imap's client, which
// parses every response: a malformed one fails here even where the wire
// checks of TestConformance are loose.
func TestGoIMAPClient(t *testing.T) {
	h := newHarness(t, nil)
	h.deliver(t, testUser, plainMsg)
	h.deliver(t, testUser, multipartMsg)
	c := h.client(t, nil)

	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []imap.Cap{imap.CapIMAP4rev2, imap.CapIdle, imap.CapUIDPlus, imap.CapMove, imap.CapSpecialUse,
		imap.CapNamespace, imap.CapQuota, imap.CapEnable, imap.CapLiteralPlus, imap.CapUnselect, imap.CapCondStore} {
		if !caps.Has(want) {
			t.Errorf("capability %s missing", want)
		}
	}

	if ns, err := c.Namespace().Wait(); err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' {
		t.Errorf("namespace: %+v, %v", ns, err)
	}

	boxes, err := c.List("", "*", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	uses := map[string]string{}
	for _, b := range boxes {
		for _, a := range b.Attrs {
			if a != imap.MailboxAttrHasNoChildren && a != imap.MailboxAttrHasChildren {
				uses[b.Mailbox] = string(a)
			}
		}
	}
	for name, use := range map[string]string{"Sent": `\Sent`, "Drafts": `\Drafts`, "Trash": `\Trash`, "Junk": `\Junk`, "Archive": `\Archive`} {
		if uses[name] != use {
			t.Errorf("LIST %s: attribute %q, want %q", name, uses[name], use)
		}
	}

	if err := c.Create("Lists/go", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename("Lists/go", "Lists/golang", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("Lists/golang").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Unsubscribe("Lists/golang").Wait(); err != nil {
		t.Fatal(err)
	}

	date := time.Date(2024, 2, 1, 8, 30, 0, 0, time.UTC)
	app := c.Append("Lists/golang", int64(len(plainMsg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagFlagged}, Time: date})
	app.Write([]byte(plainMsg))
	app.Close()
	ad, err := app.Wait()
	if err != nil || ad.UID != 1 || ad.UIDValidity == 0 {
		t.Fatalf("append: %+v, %v", ad, err)
	}

	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, UIDNext: true, NumUnseen: true, Size: true, HighestModSeq: true}).Wait()
	if err != nil || *st.NumMessages != 2 || st.UIDNext != 3 || *st.NumUnseen != 2 || *st.Size != int64(len(plainMsg)+len(multipartMsg)) || st.HighestModSeq == 0 {
		t.Fatalf("status: %+v, %v", st, err)
	}

	sel, err := c.Select("INBOX", &imap.SelectOptions{CondStore: true}).Wait()
	if err != nil || sel.NumMessages != 2 || sel.UIDNext != 3 || sel.HighestModSeq == 0 {
		t.Fatalf("select: %+v, %v", sel, err)
	}

	text := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Partial: &imap.SectionPartial{Offset: 6, Size: 2}, Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true, ModSeq: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*imap.FetchItemBodySection{text},
	}).Collect()
	if err != nil || len(msgs) != 2 {
		t.Fatalf("fetch: %d messages, %v", len(msgs), err)
	}
	m := msgs[0]
	if m.UID != 1 || m.RFC822Size != int64(len(plainMsg)) || m.Envelope.Subject != "Lunch plans" ||
		m.Envelope.From[0].Addr() != "bob@example.test" || m.Envelope.MessageID != "lunch-1@example.test" ||
		!m.InternalDate.Equal(time.Date(2024, 3, 5, 10, 0, 0, 0, time.UTC)) || m.ModSeq == 0 {
		t.Errorf("fetch 1: %+v %+v", m, m.Envelope)
	}
	if got := string(m.FindBodySection(text)); got != "we" {
		t.Errorf("BODY[TEXT]<6.2> = %q", got)
	}
	if msgs[1].Envelope.Subject != "Rapport février" {
		t.Errorf("decoded subject %q", msgs[1].Envelope.Subject)
	}
	mp, ok := msgs[1].BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || len(mp.Children) != 2 || mp.Children[1].(*imap.BodyStructureSinglePart).Filename() != "data.bin" {
		t.Errorf("bodystructure %#v", msgs[1].BodyStructure)
	}

	bin := &imap.FetchItemBinarySection{Part: []int{2}, Peek: true}
	msgs, err = c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{BinarySection: []*imap.FetchItemBinarySection{bin}}).Collect()
	if err != nil || !bytes.Equal(msgs[0].FindBinarySection(bin), []byte{0, 1, 2, 3, 4, 5, 6, 7}) {
		t.Errorf("binary: %v %v", msgs, err)
	}

	msgs, err = c.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagAnswered, "$Work"}}, nil).Collect()
	if err != nil || len(msgs) != 1 || len(msgs[0].Flags) != 2 || msgs[0].UID != 2 {
		t.Fatalf("store: %+v, %v", msgs, err)
	}
	before := msgs[0].ModSeq
	msgs, err = c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{Flags: true, ChangedSince: before - 1}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].SeqNum != 2 {
		t.Errorf("fetch changedsince: %+v, %v", msgs, err)
	}

	res, err := c.UIDSearch(&imap.SearchCriteria{
		Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "lunch"}},
		Not:    []imap.SearchCriteria{{Flag: []imap.Flag{imap.FlagAnswered}}},
	}, nil).Wait()
	if err != nil || !slicesEqual(res.AllUIDs(), []imap.UID{1}) {
		t.Errorf("search: %v, %v", res, err)
	}
	res, err = c.Search(&imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Body: []string{"noon"}}, {Flag: []imap.Flag{"$Work"}}}}}, &imap.SearchOptions{ReturnCount: true, ReturnAll: true}).Wait()
	if err != nil || res.Count != 2 {
		t.Errorf("esearch: %+v, %v", res, err)
	}

	cd, err := c.Copy(imap.SeqSetNum(1), "Archive").Wait()
	if err != nil || cd.UIDValidity == 0 || cd.DestUIDs.String() != "1" {
		t.Errorf("copy: %+v, %v", cd, err)
	}
	md, err := c.Move(imap.SeqSetNum(2), "Trash").Wait()
	if err != nil || md.SourceUIDs.String() != "2" {
		t.Errorf("move: %+v, %v", md, err)
	}
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if seqs, err := c.Expunge().Collect(); err != nil || !slicesEqual(seqs, []uint32{1}) {
		t.Errorf("expunge: %v, %v", seqs, err)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}

	// Quota.
	h.backend.setQuota(testUser, 1<<20)
	roots, err := c.GetQuotaRoot("INBOX").Wait()
	if err != nil || len(roots) != 1 || roots[0].Resources[imap.QuotaResourceStorage].Limit != 1024 {
		t.Errorf("getquotaroot: %+v, %v", roots, err)
	}
	if q, err := c.GetQuota("").Wait(); err != nil || q.Resources[imap.QuotaResourceStorage].Usage == 0 {
		t.Errorf("getquota: %+v, %v", q, err)
	}

	if en, err := c.Enable(imap.CapIMAP4rev2).Wait(); err != nil || !en.Caps.Has(imap.CapIMAP4rev2) {
		t.Errorf("enable: %+v, %v", en, err)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Error(err)
	}
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestIMAP4rev1Python drives the server with Python's imaplib, an
// IMAP4rev1 client that knows nothing of IMAP4rev2.
func TestIMAP4rev1Python(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	h := newHarness(t, nil)
	h.deliver(t, testUser, plainMsg)
	h.deliver(t, testUser, multipartMsg)
	host, port, _ := strings.Cut(h.addr, ":")
	script := `
import imaplib, sys
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
print("caps", " ".join(m.capabilities))
print("login", m.login(sys.argv[3], sys.argv[4])[0])
typ, boxes = m.list()
print("list", typ, len(boxes), any(b"\\Sent" in b for b in boxes))
print("create", m.create("Py/Sub")[0])
typ, data = m.select("INBOX")
print("select", typ, data[0].decode())
typ, data = m.search(None, "FROM", '"carol"')
print("search", typ, data[0].decode())
typ, data = m.uid("SEARCH", None, "ALL")
print("uidsearch", typ, data[0].decode())
typ, data = m.fetch("1", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
print("fetch", typ, data[0][0].decode(), data[0][1].decode().strip())
typ, data = m.fetch("2", "(BODY[TEXT])")
print("fetchtext", typ, len(data[0][1]))
typ, data = m.store("1", "+FLAGS", "(\\Deleted)")
print("store", typ, data[0].decode())
typ, data = m.copy("2", "Archive")
print("copy", typ, data[0].decode())
typ, data = m.expunge()
print("expunge", typ, data[0].decode())
typ, data = m.status("INBOX", "(MESSAGES UNSEEN UIDNEXT)")
print("status", typ, data[0].decode())
typ, data = m.append("INBOX", "(\\Seen)", imaplib.Time2Internaldate(1700000000), b"Subject: py\r\n\r\nhello\r\n")
print("append", typ, data[0].decode())
typ, data = m.lsub()
print("lsub", typ, len(data))
print("close", m.close()[0])
print("logout", m.logout()[0])
`
	out, err := exec.Command("python3", "-c", script, host, port, testUser, testPass).CombinedOutput()
	if err != nil {
		t.Fatalf("python imaplib: %v\n%s", err, out)
	}
	for _, want := range []string{
		"caps IMAP4REV2 IMAP4REV1",
		"login OK",
		"list OK 6 True",
		"create OK",
		"select OK 2",
		"search OK 2",
		"uidsearch OK 1 2",
		`fetch OK 1 (UID 1 FLAGS () RFC822.SIZE 250 BODY[HEADER.FIELDS ("SUBJECT")] {24} Subject: Lunch plans`,
		"store OK 1 (FLAGS (\\Deleted))",
		"copy OK [COPYUID",
		"expunge OK 1",
		"status OK INBOX (MESSAGES 1 UIDNEXT 3 UNSEEN 0)",
		"append OK [APPENDUID",
		"close OK",
		"logout BYE",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("python output lacks %q:\n%s", want, out)
		}
	}
}

// TestCurl reads a message and lists mailboxes with curl's IMAP support.
func TestCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	h := newHarness(t, nil)
	h.deliver(t, testUser, plainMsg)
	base := "imap://" + h.addr + "/"
	out, err := exec.Command("curl", "-sS", "--max-time", "10", "--user", testUser+":"+testPass, base+"INBOX;UID=1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Shall we meet at noon?") {
		t.Errorf("curl fetch: %v\n%s", err, out)
	}
	out, err = exec.Command("curl", "-sS", "--max-time", "10", "--user", testUser+":"+testPass, base).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"Sent"`) && !strings.Contains(string(out), " Sent") {
		t.Errorf("curl list: %v\n%s", err, out)
	}
	out, err = exec.Command("curl", "-sS", "--max-time", "10", "--user", testUser+":"+testPass, base+"INBOX?SUBJECT%20lunch").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SEARCH 1") {
		t.Errorf("curl search: %v\n%s", err, out)
	}
}

// waitFor receives from ch within a second: IDLE and polling must announce
// changes promptly.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Second):
		t.Fatalf("%s not announced within a second", what)
		panic("unreachable")
	}
}

// TestIdleAnnouncesDelivery: a message delivered to the store reaches an
// idle client within a second, and so do flag changes and expunges made
// by another session.
func TestIdleAnnouncesDelivery(t *testing.T) {
	h := newHarness(t, nil)
	h.deliver(t, testUser, plainMsg)
	exists := make(chan uint32, 10)
	expunged := make(chan uint32, 10)
	flags := make(chan *imapclient.FetchMessageData, 10)
	c := h.client(t, &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
		Expunge: func(seq uint32) { expunged <- seq },
		Fetch: func(m *imapclient.FetchMessageData) {
			m.Collect()
			flags <- m
		},
	})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	h.deliver(t, testUser, multipartMsg)
	if n := waitFor(t, exists, "delivery"); n != 2 {
		t.Errorf("EXISTS %d, want 2", n)
	}

	other := h.client(t, nil)
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, flags, "flag change")
	if _, err := other.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	if seq := waitFor(t, expunged, "expunge"); seq != 1 {
		t.Errorf("EXPUNGE %d, want 1", seq)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := c.Mailbox().NumMessages; n != 1 {
		t.Errorf("client sees %d messages, want 1", n)
	}
}

// TestPollNeverExpungesDuringFetch: RFC 9051 forbids EXPUNGE responses
// during FETCH, STORE and SEARCH; they wait for the next NOOP, while
// sequence numbers stay those the client knows.
func TestPollNeverExpungesDuringFetch(t *testing.T) {
	h := newHarness(t, nil)
	h.deliver(t, testUser, plainMsg)
	h.deliver(t, testUser, multipartMsg)
	a := h.rawLogin(t)
	a.ok("s", "SELECT INBOX")
	b := h.client(t, nil)
	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	h.deliver(t, testUser, plainMsg) // UID 3

	// The expunged message is left out, not renumbered; the new one is
	// announced after the FETCH, whose set was resolved before.
	u := a.ok("f", "FETCH 1:* UID")
	if anyMatch(`EXPUNGE`, u) || anyMatch(`^\* 1 FETCH`, u) {
		t.Errorf("FETCH during pending expunge: %q", u)
	}
	if !anyMatch(`^\* 2 FETCH \(UID 2\)$`, u) || !anyMatch(`^\* 3 EXISTS$`, u) {
		t.Errorf("FETCH during pending expunge: %q", u)
	}
	if u := a.ok("f1", "FETCH 3 UID"); !anyMatch(`^\* 3 FETCH \(UID 3\)$`, u) {
		t.Errorf("FETCH of the new message: %q", u)
	}
	u = a.ok("n", "NOOP")
	if !anyMatch(`^\* 1 EXPUNGE$`, u) {
		t.Errorf("NOOP did not report the expunge: %q", u)
	}
	u = a.ok("f2", "FETCH 1:* UID")
	if !anyMatch(`^\* 1 FETCH \(UID 2\)$`, u) || !anyMatch(`^\* 2 FETCH \(UID 3\)$`, u) {
		t.Errorf("sequence numbers after expunge: %q", u)
	}
}

// TestUnavailable: an owner node that is down gives NO [UNAVAILABLE] at
// login and, mid-session, on every command that needs the store, while
// the client's view stays as it was (no EXPUNGE, no empty mailbox).
func TestUnavailable(t *testing.T) {
	t.Run("login", func(t *testing.T) {
		h := newHarness(t, nil)
		h.backend.openErr = errOwnerDown
		rc := h.raw(t)
		_, tagged := rc.cmd("a", "LOGIN "+testUser+" "+testPass)
		if !strings.HasPrefix(tagged, "a NO [UNAVAILABLE]") {
			t.Errorf("login with owner down: %q", tagged)
		}
		if d := h.limiter.Delay("user:" + testUser); d != 0 {
			t.Errorf("an unavailable owner counted as a failed login (delay %v)", d)
		}
	})
	t.Run("mid-session", func(t *testing.T) {
		h := newHarness(t, nil)
		h.deliver(t, testUser, plainMsg)
		h.deliver(t, testUser, multipartMsg)
		rc := h.rawLogin(t)
		rc.ok("s", "SELECT INBOX")
		h.backend.down.Store(true)
		h.deliver(t, testUser, plainMsg) // a signal arrives while the owner is down
		for _, cmd := range []string{"FETCH 1:* FLAGS", "SEARCH ALL", `STORE 1 +FLAGS (\Seen)`, "EXPUNGE", "STATUS INBOX (MESSAGES)", `LIST "" "*"`, "SELECT INBOX"} {
			u, tagged := rc.cmd("x", cmd)
			if !strings.HasPrefix(tagged, "x NO [UNAVAILABLE]") {
				t.Errorf("%s with owner down: %q", cmd, tagged)
			}
			if anyMatch(`EXPUNGE|EXISTS`, u) {
				t.Errorf("%s with owner down changed the view: %q", cmd, u)
			}
		}
		// The failed SELECT left the authenticated state; select again.
		h.backend.down.Store(false)
		u := rc.ok("s2", "SELECT INBOX")
		if !anyMatch(`^\* 3 EXISTS$`, u) {
			t.Errorf("after recovery: %q", u)
		}
		h.backend.down.Store(true)
		u = rc.ok("n", "NOOP") // a poll that cannot read says nothing
		if anyMatch(`EXPUNGE|EXISTS`, u) {
			t.Errorf("NOOP with owner down: %q", u)
		}
	})
}

// TestOverQuota: APPEND and COPY that would exceed the quota answer
// NO [OVERQUOTA] and store nothing.
func TestOverQuota(t *testing.T) {
	h := newHarness(t, nil)
	h.deliver(t, testUser, plainMsg)
	h.backend.setQuota(testUser, int64(len(plainMsg))+100)
	rc := h.rawLogin(t)
	_, tagged := rc.cmd("a", "APPEND INBOX {"+strconv.Itoa(len(plainMsg))+"+}\r\n"+plainMsg)
	if !strings.HasPrefix(tagged, "a NO [OVERQUOTA]") {
		t.Errorf("append over quota: %q", tagged)
	}
	rc.ok("s", "SELECT INBOX")
	if _, tagged := rc.cmd("c", "COPY 1 Archive"); !strings.HasPrefix(tagged, "c NO [OVERQUOTA]") {
		t.Errorf("copy over quota: %q", tagged)
	}
	rc.ok("m", "MOVE 1 Archive") // moving uses no more space
	if u := rc.ok("q", "GETQUOTAROOT INBOX"); !anyMatch(`^\* QUOTA "" \(STORAGE 1 0\)$`, u) {
		t.Errorf("quota: %q", u)
	}
	if n, _, _ := h.store.Usage(testUser); n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
	// A small message still fits.
	rc.ok("a2", "APPEND INBOX {9+}\r\nSubject: \r\n")
}

// TestMailboxGoneUnderSession: another session's rename is followed, its
// delete ends the session with BYE.
func TestMailboxGoneUnderSession(t *testing.T) {
	h := newHarness(t, nil)
	if err := h.store.CreateMailbox(testUser, "Box", ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.store.Append(testUser, "Box", nil, time.Time{}, []byte(plainMsg)); err != nil {
		t.Fatal(err)
	}
	rc := h.rawLogin(t)
	rc.ok("s", "SELECT Box")
	if err := h.store.RenameMailbox(testUser, "Box", "Renamed"); err != nil {
		t.Fatal(err)
	}
	rc.ok("n", "NOOP")
	if u := rc.ok("f", "FETCH 1 UID"); !anyMatch(`^\* 1 FETCH \(UID 1\)$`, u) {
		t.Errorf("after rename: %q", u)
	}
	if err := h.store.DeleteMailbox(testUser, "Renamed"); err != nil {
		t.Fatal(err)
	}
	rc.send("n2 NOOP")
	lines, closed := rc.closed()
	if !closed || !anyMatch(`^\* BYE`, lines) {
		t.Errorf("after delete: %q, closed %v", lines, closed)
	}
}

// TestOwnDeleteOfSelected: deleting the selected mailbox is allowed; the
// session then answers NO until another mailbox is selected.
func TestOwnDeleteOfSelected(t *testing.T) {
	h := newHarness(t, nil)
	rc := h.rawLogin(t)
	rc.ok("c", "CREATE Tmp")
	rc.ok("s", "SELECT Tmp")
	rc.ok("d", "DELETE Tmp")
	if _, tagged := rc.cmd("f", "SEARCH ALL"); !strings.HasPrefix(tagged, "f NO [NONEXISTENT]") {
		t.Errorf("search in deleted mailbox: %q", tagged)
	}
	rc.ok("s2", "SELECT INBOX")
}

// TestSTARTTLS: without TLS, LOGIN is refused and advertised as disabled;
// after STARTTLS with a self-signed certificate it works. Implicit TLS
// works as well.
func TestSTARTTLS(t *testing.T) {
	tlsCfg, pool := selfSigned(t)
	h := newHarness(t, func(c *Config) { c.TLS = tlsCfg; c.InsecureAuth = false })
	rc := h.raw(t)
	u := rc.ok("c", "CAPABILITY")
	if !anyMatch(`STARTTLS`, u) || !anyMatch(`LOGINDISABLED`, u) || anyMatch(`AUTH=PLAIN`, u) {
		t.Errorf("plain-text capabilities: %q", u)
	}
	if _, tagged := rc.cmd("l", "LOGIN "+testUser+" "+testPass); !strings.HasPrefix(tagged, "l NO [PRIVACYREQUIRED]") {
		t.Errorf("LOGIN without TLS: %q", tagged)
	}
	if _, tagged := rc.cmd("a", "AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ="); !strings.HasPrefix(tagged, "a NO [PRIVACYREQUIRED]") {
		t.Errorf("AUTHENTICATE without TLS: %q", tagged)
	}

	c, err := imapclient.DialStartTLS(h.addr, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatalf("login after STARTTLS: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	hs := newHarness(t, func(c *Config) { c.Name = "imaps"; c.TLS = tlsCfg; c.ImplicitTLS = true; c.InsecureAuth = false })
	cs, err := imapclient.DialTLS(hs.addr, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if err := cs.Login(testUser, testPass).Wait(); err != nil {
		t.Fatalf("login over implicit TLS: %v", err)
	}
	if caps := cs.Caps(); caps.Has(imap.CapStartTLS) {
		t.Error("STARTTLS offered inside TLS")
	}
}

// TestLoginThrottle: failed logins are slowed and counted per address and
// user; a success forgets only the user's failures.
func TestLoginThrottle(t *testing.T) {
	h := newHarness(t, nil)
	for i := 0; i < 4; i++ {
		c, err := imapclient.DialInsecure(h.addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		var imapErr *imap.Error
		if err := c.Login(testUser, "wrong").Wait(); !errors.As(err, &imapErr) || imapErr.Code != imap.ResponseCodeAuthenticationFailed {
			t.Errorf("wrong password: %v", err)
		}
		c.Close()
	}
	var delays []time.Duration
	for len(h.delays) > 0 {
		delays = append(delays, <-h.delays)
	}
	if len(delays) != 4 || delays[2] != 0 || delays[3] != time.Second {
		t.Errorf("login delays %v, want 0 0 0 1s", delays)
	}
	if got := counterValue(t, h.m.authFailures, "imap"); got != 4 {
		t.Errorf("auth failures metric %v, want 4", got)
	}
	h.client(t, nil) // correct password
	if d := h.limiter.Delay("user:" + testUser); d != 0 {
		t.Errorf("user delay after success %v", d)
	}
	if d := h.limiter.Delay("ip:127.0.0.1"); d == 0 {
		t.Error("a success forgot the address's failures")
	}
}

// counterValue reads one series of a counter vector.
func counterValue(t *testing.T, vec *prometheus.CounterVec, label string) float64 {
	t.Helper()
	var m dto.Metric
	if err := vec.WithLabelValues(label).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestAuthenticatePlain: AUTHENTICATE PLAIN with an initial response
// (SASL-IR) and with a continuation, and a wrong password.
func TestAuthenticatePlain(t *testing.T) {
	h := newHarness(t, nil)
	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + testUser + "\x00" + testPass))
	rc := h.raw(t)
	if u := rc.ok("a", "AUTHENTICATE PLAIN "+plain); len(u) != 0 {
		t.Errorf("untagged %q", u)
	}
	rc.ok("s", "SELECT INBOX")

	rc = h.raw(t)
	rc.send("a AUTHENTICATE PLAIN")
	if l, _ := rc.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("continuation %q", l)
	}
	rc.send(plain)
	if _, tagged := rc.until("a"); !strings.HasPrefix(tagged, "a OK") {
		t.Errorf("AUTHENTICATE with continuation: %q", tagged)
	}

	rc = h.raw(t)
	bad := base64.StdEncoding.EncodeToString([]byte("\x00" + testUser + "\x00nope"))
	if _, tagged := rc.cmd("a", "AUTHENTICATE PLAIN "+bad); !strings.HasPrefix(tagged, "a NO [AUTHENTICATIONFAILED]") {
		t.Errorf("wrong password: %q", tagged)
	}
	if got := counterValue(t, h.m.authFailures, "imap"); got != 1 {
		t.Errorf("auth failures %v", got)
	}
}
