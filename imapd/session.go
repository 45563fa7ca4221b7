package imapd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"clustermail/mailstore"
)

// session is one connection's state. go-imap calls its methods one at a
// time (IDLE's goroutine runs while the connection waits for DONE), so it
// needs no lock.
type session struct {
	s      *Server
	conn   *imapserver.Conn
	ip     string
	log    *slog.Logger
	closed bool

	// Set by Login.
	account string
	store   Store

	sel *view // the selected mailbox, nil in the authenticated state
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
	_ imapserver.SessionQuota       = (*session)(nil)
)

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	ip := c.NetConn().RemoteAddr().String()
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	sess := &session{s: s, conn: c, ip: ip, log: s.log.With("remote", ip)}
	s.m.sessions.WithLabelValues(s.cfg.Name).Inc()
	s.track(sess, true)
	return sess, nil, nil
}

// Close ends the session; go-imap calls it once the connection is gone.
func (sess *session) Close() error {
	if sess.closed {
		return nil
	}
	sess.closed = true
	sess.unselect()
	sess.s.track(sess, false)
	return nil
}

// Login checks the password, slowed down by earlier failures from the same
// address or for the same user, then opens the account's store and makes
// sure its default mailboxes exist. AUTHENTICATE PLAIN comes here too.
func (sess *session) Login(username, password string) error {
	keys := []string{"ip:" + sess.ip, "user:" + strings.ToLower(username)}
	if sess.s.limiter.Locked(keys...) {
		sess.log.Warn("login refused: locked out", "user", username)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Too many failed attempts, try later"}
	}
	if !sess.s.wait(sess.s.limiter.Delay(keys...)) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Server shutting down"}
	}
	account, ok := sess.s.backend.Authenticate(username, password)
	if !ok {
		sess.s.limiter.Fail(keys...)
		sess.s.m.authFailures.WithLabelValues(sess.s.cfg.Name).Inc()
		sess.log.Info("login failed", "user", username)
		return imapserver.ErrAuthFailed
	}
	store, err := sess.s.backend.Open(account)
	if err == nil {
		err = store.EnsureAccount(account)
	}
	if err != nil {
		// The password was right: not a failure to count.
		sess.s.limiter.Succeed(keys[1])
		return sess.fail("login", fmt.Errorf("open account %s: %w", account, err), missingIsNonExistent)
	}
	sess.s.limiter.Succeed(keys[1])
	sess.account, sess.store = account, store
	sess.log = sess.log.With("account", account)
	sess.log.Debug("logged in")
	return nil
}

// AppendLimit is advertised as APPENDLIMIT and enforced by go-imap before
// the literal is read.
func (sess *session) AppendLimit() uint32 { return uint32(sess.s.cfg.MaxLiteral) }

// Namespace: one personal namespace, no prefix, "/" as separator.
func (sess *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

// delim is the hierarchy separator as go-imap wants it.
const delim = '/' // mailstore.Separator

// Create creates a mailbox and, as RFC 9051 recommends, the missing
// parents it needs. A trailing separator only says that the mailbox will
// have children.
func (sess *session) Create(name string, options *imap.CreateOptions) error {
	name = strings.TrimSuffix(name, mailstore.Separator)
	var use string
	if options != nil {
		switch len(options.SpecialUse) {
		case 0:
		case 1:
			use = string(options.SpecialUse[0])
		default:
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "USEATTR",
				Text: "Only one special-use attribute per mailbox"}
		}
	}
	if strings.EqualFold(name, mailstore.Inbox) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists,
			Text: "INBOX always exists"}
	}
	if err := sess.createParents(name); err != nil {
		return err
	}
	return sess.fail("create", sess.store.CreateMailbox(sess.account, name, use), missingIsNonExistent)
}

// createParents creates the missing ancestors of name.
func (sess *session) createParents(name string) error {
	parts := strings.Split(name, mailstore.Separator)
	for i := 1; i < len(parts); i++ {
		parent := strings.Join(parts[:i], mailstore.Separator)
		if parent == "" {
			continue // an empty component: CreateMailbox will refuse the name
		}
		_, err := sess.store.Mailbox(sess.account, parent)
		if errors.Is(err, mailstore.ErrNoMailbox) {
			err = sess.store.CreateMailbox(sess.account, parent, "")
			if errors.Is(err, mailstore.ErrMailboxExists) {
				err = nil // created meanwhile by someone else
			}
		}
		if err != nil {
			return sess.fail("create parent", err, missingIsNonExistent)
		}
	}
	return nil
}

// Delete deletes a mailbox. Deleting the selected one is allowed; the
// session then answers NO to commands on it until another is selected.
func (sess *session) Delete(name string) error {
	if err := sess.store.DeleteMailbox(sess.account, name); err != nil {
		return sess.fail("delete", err, missingIsNonExistent)
	}
	if v := sess.sel; v != nil && sameName(v.name, name) {
		v.gone = true
	}
	return nil
}

// Rename renames a mailbox and its children, creating missing parents of
// the new name. A selected mailbox keeps being selected under its new name.
func (sess *session) Rename(from, to string, options *imap.RenameOptions) error {
	to = strings.TrimSuffix(to, mailstore.Separator)
	if err := sess.createParents(to); err != nil {
		return err
	}
	if err := sess.store.RenameMailbox(sess.account, from, to); err != nil {
		return sess.fail("rename", err, missingIsNonExistent)
	}
	if v := sess.sel; v != nil && !v.gone {
		if sameName(v.name, from) {
			// Renaming INBOX moves its messages, keeping the id: follow them.
			v.name = to
		} else if strings.HasPrefix(v.name, from+mailstore.Separator) && !sameName(from, mailstore.Inbox) {
			v.name = to + strings.TrimPrefix(v.name, from)
		}
	}
	return nil
}

// sameName compares mailbox names, INBOX case-insensitively.
func sameName(a, b string) bool {
	return canonInbox(a) == canonInbox(b)
}

// canonInbox spells a leading INBOX component, which IMAP treats
// case-insensitively, as "INBOX".
func canonInbox(name string) string {
	first, rest, found := strings.Cut(name, mailstore.Separator)
	if !strings.EqualFold(first, mailstore.Inbox) {
		return name
	}
	if !found {
		return mailstore.Inbox
	}
	return mailstore.Inbox + mailstore.Separator + rest
}

func (sess *session) Subscribe(name string) error {
	return sess.fail("subscribe", sess.store.SetSubscribed(sess.account, name, true), missingIsNonExistent)
}

func (sess *session) Unsubscribe(name string) error {
	return sess.fail("unsubscribe", sess.store.SetSubscribed(sess.account, name, false), missingIsNonExistent)
}

// Status answers STATUS from the mailbox record; DELETED and
// DELETED-STORAGE need the message list.
func (sess *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	info, err := sess.store.Mailbox(sess.account, name)
	if err != nil {
		return nil, sess.fail("status", err, missingIsNonExistent)
	}
	return sess.statusData(info, options)
}

func (sess *session) statusData(info mailstore.MailboxInfo, options *imap.StatusOptions) (*imap.StatusData, error) {
	data := &imap.StatusData{
		Mailbox:       info.Name,
		UIDNext:       imap.UID(info.UIDNext),
		UIDValidity:   info.UIDValidity,
		HighestModSeq: info.HighestModSeq,
	}
	num := func(n int) *uint32 { v := uint32(n); return &v }
	data.NumMessages = num(info.Messages)
	data.NumUnseen = num(info.Unseen)
	data.NumRecent = num(0)
	data.Size = &info.Bytes
	limit := uint32(sess.s.cfg.MaxLiteral)
	data.AppendLimit = &limit
	if options.NumDeleted || options.DeletedStorage {
		msgs, err := sess.store.Messages(sess.account, info.Name)
		if err != nil {
			return nil, sess.fail("status", err, missingIsNonExistent)
		}
		var n int
		var bytes int64
		for _, m := range msgs {
			if hasFlag(m.Flags, imap.FlagDeleted) {
				n++
				bytes += m.Size
			}
		}
		data.NumDeleted, data.DeletedStorage = num(n), &bytes
	}
	return data, nil
}

// List answers LIST (with the LIST-EXTENDED selection and return options)
// and LSUB. Every mailbox is listed with its special use and
// \HasChildren/\HasNoChildren; parents that do not exist but have children
// are listed as \NonExistent (\Noselect for IMAP4rev1 clients).
func (sess *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter and the root of ref.
		root := ""
		if i := strings.Index(ref, mailstore.Separator); i >= 0 {
			root = ref[:i+1]
		}
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim, Mailbox: root})
	}
	boxes, err := sess.store.Mailboxes(sess.account)
	if err != nil {
		return sess.fail("list", err, missingIsNonExistent)
	}
	byName := map[string]mailstore.MailboxInfo{}
	seen := map[string]bool{}
	var names []string
	for _, b := range boxes {
		if seen[b.Name] {
			continue // names are unique; a stale duplicate is listed once
		}
		byName[b.Name] = b
		seen[b.Name] = true
		names = append(names, b.Name)
	}
	// Parents that do not exist themselves.
	for _, b := range boxes {
		parts := strings.Split(b.Name, mailstore.Separator)
		for i := 1; i < len(parts); i++ {
			if p := strings.Join(parts[:i], mailstore.Separator); !seen[p] {
				seen[p] = true
				names = append(names, p)
			}
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		// INBOX first, as Mailboxes orders them.
		switch {
		case a == mailstore.Inbox:
			return -1
		case b == mailstore.Inbox:
			return 1
		}
		return strings.Compare(a, b)
	})
	children := func(name string, subscribedOnly bool) bool {
		for _, b := range boxes {
			if strings.HasPrefix(b.Name, name+mailstore.Separator) && (!subscribedOnly || b.Subscribed) {
				return true
			}
		}
		return false
	}
	ref = canonInbox(ref)
	rev2 := sess.conn.EnabledCaps().Has(imap.CapIMAP4rev2)
	for _, name := range names {
		if !matchAny(name, ref, patterns) {
			continue
		}
		info, exists := byName[name]
		data := &imap.ListData{Delim: delim, Mailbox: name}
		if !exists {
			if rev2 {
				data.Attrs = append(data.Attrs, imap.MailboxAttrNonExistent)
			} else {
				data.Attrs = append(data.Attrs, imap.MailboxAttrNoSelect)
			}
		}
		if options.SelectSubscribed && !info.Subscribed {
			if !options.SelectRecursiveMatch || !children(name, true) {
				continue
			}
			data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		}
		if options.SelectSpecialUse && info.SpecialUse == "" {
			continue
		}
		if info.Subscribed && (options.ReturnSubscribed || options.SelectSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if children(name, false) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if info.SpecialUse != "" {
			data.Attrs = append(data.Attrs, imap.MailboxAttr(info.SpecialUse))
		}
		if options.ReturnStatus != nil && exists {
			if data.Status, err = sess.statusData(info, options.ReturnStatus); err != nil {
				return err
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// matchAny reports whether name matches one of the LIST patterns under
// ref. A leading INBOX in a pattern is matched case-insensitively.
func matchAny(name, ref string, patterns []string) bool {
	for _, p := range patterns {
		if ref == "" || strings.HasPrefix(p, mailstore.Separator) {
			p = canonInbox(p)
		}
		if imapserver.MatchList(name, delim, ref, p) {
			return true
		}
	}
	return false
}

// Append stores a message, refusing it when it would take the account over
// its quota. go-imap has already checked the size against APPENDLIMIT.
func (sess *session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	if err := sess.checkQuota(func() (int64, error) { return r.Size(), nil }); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(int(min(r.Size(), sess.s.cfg.MaxLiteral)))
	if _, err := io.Copy(&buf, io.LimitReader(r, sess.s.cfg.MaxLiteral+1)); err != nil {
		return nil, fmt.Errorf("read APPEND literal: %w", err)
	}
	if int64(buf.Len()) > sess.s.cfg.MaxLiteral {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Message too big"}
	}
	if int64(buf.Len()) != r.Size() {
		// The connection ended inside the literal: store nothing.
		return nil, fmt.Errorf("read APPEND literal: %w", io.ErrUnexpectedEOF)
	}
	uidValidity, uid, err := sess.store.Append(sess.account, mailbox, flagStrings(options.Flags), options.Time, buf.Bytes())
	if err != nil {
		return nil, sess.fail("append", err, missingIsTryCreate)
	}
	return &imap.AppendData{UID: imap.UID(uid), UIDValidity: uidValidity}, nil
}

// checkQuota refuses adding size() bytes beyond the account's quota; size
// is only computed for an account that has one.
func (sess *session) checkQuota(size func() (int64, error)) error {
	limit, err := sess.s.backend.Quota(sess.account)
	if err != nil {
		return sess.fail("quota", err, missingIsNonExistent)
	}
	if limit <= 0 {
		return nil
	}
	n, err := size()
	if err != nil {
		return sess.fail("quota size", err, missingIsNonExistent)
	}
	_, used, err := sess.store.Usage(sess.account)
	if err != nil {
		return sess.fail("quota usage", err, missingIsNonExistent)
	}
	if used+n > limit {
		return errOverQuota
	}
	return nil
}

// quotaRoot is the name of the account's only quota root.
const quotaRoot = ""

// GetQuota reports the account's STORAGE usage and limit in KiB.
func (sess *session) GetQuota(root string) (*imapserver.QuotaData, error) {
	q, err := sess.quota()
	if err != nil {
		return nil, err
	}
	if root != quotaRoot || q == nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent,
			Text: "No such quota root"}
	}
	return q, nil
}

// GetQuotaRoot reports the quota root of an existing mailbox: the account's
// one, or none when the account is unlimited.
func (sess *session) GetQuotaRoot(mailbox string) ([]imapserver.QuotaData, error) {
	if _, err := sess.store.Mailbox(sess.account, mailbox); err != nil {
		return nil, sess.fail("getquotaroot", err, missingIsNonExistent)
	}
	q, err := sess.quota()
	if err != nil || q == nil {
		return nil, err
	}
	return []imapserver.QuotaData{*q}, nil
}

// quota returns the account's quota, nil if it has none.
func (sess *session) quota() (*imapserver.QuotaData, error) {
	limit, err := sess.s.backend.Quota(sess.account)
	if err != nil {
		return nil, sess.fail("quota", err, missingIsNonExistent)
	}
	if limit <= 0 {
		return nil, nil
	}
	_, used, err := sess.store.Usage(sess.account)
	if err != nil {
		return nil, sess.fail("quota usage", err, missingIsNonExistent)
	}
	// RFC 9208 counts STORAGE in units of 1024 octets: usage rounded up,
	// so a non-empty account never shows 0, the limit rounded down.
	return &imapserver.QuotaData{Root: quotaRoot, Resources: map[imap.QuotaResourceType]imapserver.QuotaResourceData{
		imap.QuotaResourceStorage: {Usage: (used + 1023) / 1024, Limit: limit / 1024},
	}}, nil
}

// flagStrings converts go-imap flags for the store.
func flagStrings(flags []imap.Flag) []string {
	out := make([]string, len(flags))
	for i, f := range flags {
		out[i] = string(f)
	}
	return out
}

// imapFlags converts stored flags for go-imap.
func imapFlags(flags []string) []imap.Flag {
	out := make([]imap.Flag, len(flags))
	for i, f := range flags {
		out[i] = imap.Flag(f)
	}
	return out
}

// hasFlag reports whether flags holds f, compared case-insensitively as
// the store does.
func hasFlag(flags []string, f imap.Flag) bool {
	for _, g := range flags {
		if strings.EqualFold(g, string(f)) {
			return true
		}
	}
	return false
}
