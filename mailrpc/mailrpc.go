// Package mailrpc lets every node serve every mailbox (DESIGN promise 4):
// Handler serves a node's *mailstore.Store to the other nodes over the
// cluster port, and Client is a Store whose calls run on the owner node.
// The IMAP and POP3 front ends use a local *mailstore.Store or a *Client
// through the Store interface, without knowing which.
//
// Wire format, kept simple so curl can speak it: one POST per method to
// Prefix+Method. Arguments are a JSON object in the request body, except
// for Append, Deliver and DeliverWithin, whose request body is the raw
// message (never base64'd into JSON) and whose arguments ride in
// ArgsHeader. A result is JSON, except Body's, which is the raw message. A failure is a non-2xx
// status with a JSON {"code", "error"} whose code names the mailstore
// sentinel, which the client maps back so errors.Is works on both sides.
// Subscribe is a long-lived chunked response of lines: "ready" once the
// owner has registered the subscription, "change" for each signal and
// "beat" as a heartbeat.
package mailrpc

import (
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"clustermail/mailstore"
)

// Prefix is the path under which Handler serves; the node mounts Handler
// on its internal RPC mux at this prefix.
const Prefix = "/internal/mail/"

// ArgsHeader carries the JSON arguments, base64url-encoded (header values
// must not hold arbitrary UTF-8), of the methods whose request body is a
// message.
const ArgsHeader = "X-Clustermail-Mail-Args"

// DefaultTimeout bounds one call of a Client, from sending the request to
// reading the whole reply, unless Client.Timeout says otherwise. The store
// methods take no context, so this is their deadline.
const DefaultTimeout = 30 * time.Second

// Size limits, enforced by both sides so neither can be made to buffer
// without bound.
const (
	// maxBody bounds a message body, matching the largest body the nodes
	// move between spools: a message the cluster accepted must stay
	// readable from every node.
	maxBody = 256 << 20
	// maxArgs bounds the JSON arguments. It is larger than a typical RPC
	// argument because UID lists grow with the mailbox: 16 MiB holds over
	// a million UIDs, enough for a UID STORE 1:* on a large folder.
	maxArgs = 16 << 20
	// maxReply bounds a JSON reply; a listing of a million messages is
	// about 150 MB.
	maxReply = 1 << 30
)

// Subscribe stream timing. The client gives up on a silent stream after
// three missed heartbeats and reconnects.
const (
	heartbeat    = 15 * time.Second
	streamIdle   = 3 * heartbeat
	backoffMin   = 100 * time.Millisecond
	backoffMax   = 5 * time.Second
	writeTimeout = 30 * time.Second
)

// Lines of the Subscribe stream.
const (
	lineReady  = "ready"
	lineChange = "change"
	lineBeat   = "beat"
)

// ErrUnavailable means the owner node could not be reached or did not
// answer in time: connection refused, timeout, a broken stream, a 5xx from
// a node going down, or its store already closed. The operation may or may
// not have happened on the owner. IMAP reports it as [UNAVAILABLE], POP3 as
// -ERR [SYS/TEMP].
var ErrUnavailable = errors.New("mailbox owner node unavailable")

// Store is the method set shared by *mailstore.Store and *Client: what the
// front ends need to work on an account's mailboxes wherever they live.
// Open and Close stay with the owner of the local store.
type Store interface {
	EnsureAccount(account string) error
	DeleteAccount(account string) error
	Deliver(account, key string, internalDate time.Time, body []byte) (uid uint32, duplicate bool, err error)
	DeliverWithin(account, key string, internalDate time.Time, body []byte, quota int64) (uid uint32, duplicate bool, err error)
	Mailboxes(account string) ([]mailstore.MailboxInfo, error)
	Mailbox(account, name string) (mailstore.MailboxInfo, error)
	CreateMailbox(account, name string, specialUse string) error
	RenameMailbox(account, from, to string) error
	DeleteMailbox(account, name string) error
	SetSubscribed(account, name string, on bool) error
	Append(account, mailbox string, flags []string, internalDate time.Time, body []byte) (uidValidity, uid uint32, err error)
	Messages(account, mailbox string) ([]mailstore.Message, error)
	Message(account, mailbox string, uid uint32) (mailstore.Message, error)
	Body(account, mailbox string, uid uint32) ([]byte, error)
	StoreFlags(account, mailbox string, uids []uint32, op mailstore.FlagOp, flags []string, unchangedSince uint64) (updated []mailstore.Message, failed []uint32, err error)
	Copy(account, from string, uids []uint32, to string) (uidValidity uint32, srcUIDs, dstUIDs []uint32, err error)
	Move(account, from string, uids []uint32, to string) (uidValidity uint32, srcUIDs, dstUIDs []uint32, err error)
	Expunge(account, mailbox string, uids []uint32) ([]uint32, error)
	Usage(account string) (messages int, bytes int64, err error)
	Subscribe(account string) (<-chan struct{}, func())
}

var (
	_ Store = (*mailstore.Store)(nil)
	_ Store = (*Client)(nil)
)

// args is the union of every method's arguments; each method uses its
// own subset. Mailbox also holds the source of Copy/Move and the old name
// of RenameMailbox, To their destination.
type args struct {
	Account    string `json:"account"`
	Mailbox    string `json:"mailbox,omitempty"`
	To         string `json:"to,omitempty"`
	SpecialUse string `json:"specialUse,omitempty"`
	On         bool   `json:"on,omitempty"`
	UID        uint32 `json:"uid,omitempty"`
	// UIDs and Flags have no omitempty: nil and empty differ (Expunge
	// with nil UIDs expunges every \Deleted message, with an empty list
	// none), and JSON keeps null apart from [].
	UIDs           []uint32         `json:"uids"`
	Flags          []string         `json:"flags"`
	Op             mailstore.FlagOp `json:"op,omitempty"`
	UnchangedSince uint64           `json:"unchangedSince,omitempty"`
	// Key is bytes (base64 in JSON) because mailstore takes any bytes as
	// a delivery key, and JSON strings would replace invalid UTF-8.
	Key   []byte    `json:"key,omitempty"`
	Date  *wireTime `json:"date,omitempty"`
	Quota int64     `json:"quota,omitempty"`
}

// check refuses strings JSON cannot carry: encoding/json replaces invalid
// UTF-8 with U+FFFD, which could turn an invalid account name into a valid
// one on the owner. Each gets the sentinel the local store would return.
func (a *args) check() error {
	switch {
	case !utf8.ValidString(a.Account):
		return fmt.Errorf("%w: %q", mailstore.ErrBadAccount, a.Account)
	case !utf8.ValidString(a.Mailbox):
		return fmt.Errorf("%w: %q", mailstore.ErrBadName, a.Mailbox)
	case !utf8.ValidString(a.To):
		return fmt.Errorf("%w: %q", mailstore.ErrBadName, a.To)
	case !utf8.ValidString(a.SpecialUse):
		return fmt.Errorf("%w: %q", mailstore.ErrBadSpecialUse, a.SpecialUse)
	}
	for _, f := range a.Flags {
		if !utf8.ValidString(f) {
			return fmt.Errorf("%w: %q", mailstore.ErrBadFlag, f)
		}
	}
	return nil
}

// wireTime is an instant with its UTC offset in seconds, as mailstore
// keeps an internal date. RFC 3339 text would drop offsets with seconds and
// turn a zero offset into UTC, so times would not compare equal after the
// trip. nil is the zero time.
type wireTime struct {
	Nanos  int64 `json:"ns"`
	Offset int   `json:"off"`
}

func toWireTime(t time.Time) *wireTime {
	if t.IsZero() {
		return nil
	}
	_, off := t.Zone()
	return &wireTime{Nanos: t.UnixNano(), Offset: off}
}

// time rebuilds the value mailstore itself returns for a stored date.
func (w *wireTime) time() time.Time {
	if w == nil {
		return time.Time{}
	}
	return time.Unix(0, w.Nanos).In(time.FixedZone("", w.Offset))
}

// wireMessage is mailstore.Message with its date in wireTime.
type wireMessage struct {
	UID    uint32    `json:"uid"`
	ModSeq uint64    `json:"modseq"`
	Flags  []string  `json:"flags"`
	Date   *wireTime `json:"date"`
	Size   int64     `json:"size"`
}

func toWireMessage(m mailstore.Message) wireMessage {
	return wireMessage{UID: m.UID, ModSeq: m.ModSeq, Flags: m.Flags, Date: toWireTime(m.InternalDate), Size: m.Size}
}

func (w wireMessage) message() mailstore.Message {
	return mailstore.Message{UID: w.UID, ModSeq: w.ModSeq, Flags: w.Flags, InternalDate: w.Date.time(), Size: w.Size}
}

// toWireMessages and fromWireMessages keep nil apart from empty, like the
// rest of the wire format.
func toWireMessages(ms []mailstore.Message) []wireMessage {
	if ms == nil {
		return nil
	}
	out := make([]wireMessage, len(ms))
	for i, m := range ms {
		out[i] = toWireMessage(m)
	}
	return out
}

func fromWireMessages(ws []wireMessage) []mailstore.Message {
	if ws == nil {
		return nil
	}
	out := make([]mailstore.Message, len(ws))
	for i, w := range ws {
		out[i] = w.message()
	}
	return out
}

// Replies of the methods returning more than one value.
type (
	deliverReply struct {
		UID       uint32 `json:"uid"`
		Duplicate bool   `json:"duplicate"`
	}
	appendReply struct {
		UIDValidity uint32 `json:"uidValidity"`
		UID         uint32 `json:"uid"`
	}
	storeFlagsReply struct {
		Updated []wireMessage `json:"updated"`
		Failed  []uint32      `json:"failed"`
	}
	transferReply struct {
		UIDValidity uint32   `json:"uidValidity"`
		Src         []uint32 `json:"src"`
		Dst         []uint32 `json:"dst"`
	}
	usageReply struct {
		Messages int   `json:"messages"`
		Bytes    int64 `json:"bytes"`
	}
)

// errorReply is the body of every failed call.
type errorReply struct {
	Code  string `json:"code"`
	Error string `json:"error"`
}

// Codes of failures that are no mailstore sentinel.
const (
	codeBadRequest = "bad_request" // undecodable arguments: a bug or a version skew
	codeNotFound   = "unknown_method"
	codeMethod     = "method_not_allowed"
	codeTooLarge   = "too_large"
	codeInternal   = "internal"
	codeClosed     = "closed"
)

// sentinels maps every mailstore sentinel to its wire code and HTTP
// status. Order matters only if an error wraps several; the first wins.
var sentinels = []struct {
	code   string
	err    error
	status int
}{
	{"no_mailbox", mailstore.ErrNoMailbox, http.StatusNotFound},
	{"mailbox_exists", mailstore.ErrMailboxExists, http.StatusConflict},
	{"no_message", mailstore.ErrNoMessage, http.StatusNotFound},
	{"delete_inbox", mailstore.ErrDeleteInbox, http.StatusConflict},
	{"bad_account", mailstore.ErrBadAccount, http.StatusBadRequest},
	{"bad_name", mailstore.ErrBadName, http.StatusBadRequest},
	{"bad_flag", mailstore.ErrBadFlag, http.StatusBadRequest},
	{"bad_special_use", mailstore.ErrBadSpecialUse, http.StatusBadRequest},
	{"bad_argument", mailstore.ErrBadArgument, http.StatusBadRequest},
	{"uid_exhausted", mailstore.ErrUIDExhausted, http.StatusConflict},
	{"over_quota", mailstore.ErrOverQuota, http.StatusInsufficientStorage},
	{"corrupt", mailstore.ErrCorrupt, http.StatusInternalServerError},
	{codeClosed, mailstore.ErrClosed, http.StatusServiceUnavailable},
}
