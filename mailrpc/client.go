package mailrpc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"clustermail/mailstore"
)

// Client is the *mailstore.Store of another node: the same methods with the
// same results and errors (errors.Is(err, mailstore.ErrNoMailbox) holds as
// for a local store), executed on the node at a cluster address. A failure
// to reach the owner, or an answer later than Timeout, wraps
// ErrUnavailable. It is safe for concurrent use.
//
// A call cut off by a timeout may still complete on the owner: Deliver is
// idempotent by its key, but a retried Append may store the message twice.
type Client struct {
	// Timeout bounds each call, from sending the request to reading the
	// whole reply; zero means DefaultTimeout. Set it before using the
	// Client.
	Timeout time.Duration

	hc   *http.Client
	addr string
	base string

	// Subscribe stream timing; fields so tests can shrink them.
	idle       time.Duration
	backoffMin time.Duration
	backoffMax time.Duration
}

// NewClient returns a Client for the node whose cluster address is addr.
// hc must reach nodes' internal RPC servers, as peer.NewHTTPClient's does,
// and have no Timeout of its own, which would cut Subscribe streams; share
// one among Clients so they share connections.
func NewClient(hc *http.Client, addr string) *Client {
	return &Client{
		hc: hc, addr: addr, base: "http://" + addr + Prefix,
		idle: streamIdle, backoffMin: backoffMin, backoffMax: backoffMax,
	}
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// EnsureAccount runs mailstore.Store.EnsureAccount on the owner.
func (c *Client) EnsureAccount(account string) error {
	return c.call("EnsureAccount", &args{Account: account}, nil)
}

// DeleteAccount runs mailstore.Store.DeleteAccount on the owner.
func (c *Client) DeleteAccount(account string) error {
	return c.call("DeleteAccount", &args{Account: account}, nil)
}

// Deliver runs mailstore.Store.Deliver on the owner. Being idempotent by
// key, it is safe to retry after ErrUnavailable.
func (c *Client) Deliver(account, key string, internalDate time.Time, body []byte) (uid uint32, duplicate bool, err error) {
	var r deliverReply
	err = c.callMessage("Deliver", &args{Account: account, Key: []byte(key), Date: toWireTime(internalDate)}, body, &r)
	return r.UID, r.Duplicate, err
}

// DeliverWithin runs mailstore.Store.DeliverWithin on the owner, which
// checks the quota atomically with the delivery. Like Deliver, it is safe
// to retry.
func (c *Client) DeliverWithin(account, key string, internalDate time.Time, body []byte, quota int64) (uid uint32, duplicate bool, err error) {
	var r deliverReply
	err = c.callMessage("DeliverWithin", &args{Account: account, Key: []byte(key), Date: toWireTime(internalDate), Quota: quota}, body, &r)
	return r.UID, r.Duplicate, err
}

// Mailboxes runs mailstore.Store.Mailboxes on the owner.
func (c *Client) Mailboxes(account string) ([]mailstore.MailboxInfo, error) {
	var r []mailstore.MailboxInfo
	err := c.call("Mailboxes", &args{Account: account}, &r)
	return r, err
}

// Mailbox runs mailstore.Store.Mailbox on the owner.
func (c *Client) Mailbox(account, name string) (mailstore.MailboxInfo, error) {
	var r mailstore.MailboxInfo
	err := c.call("Mailbox", &args{Account: account, Mailbox: name}, &r)
	return r, err
}

// CreateMailbox runs mailstore.Store.CreateMailbox on the owner.
func (c *Client) CreateMailbox(account, name string, specialUse string) error {
	return c.call("CreateMailbox", &args{Account: account, Mailbox: name, SpecialUse: specialUse}, nil)
}

// RenameMailbox runs mailstore.Store.RenameMailbox on the owner.
func (c *Client) RenameMailbox(account, from, to string) error {
	return c.call("RenameMailbox", &args{Account: account, Mailbox: from, To: to}, nil)
}

// DeleteMailbox runs mailstore.Store.DeleteMailbox on the owner.
func (c *Client) DeleteMailbox(account, name string) error {
	return c.call("DeleteMailbox", &args{Account: account, Mailbox: name}, nil)
}

// SetSubscribed runs mailstore.Store.SetSubscribed on the owner.
func (c *Client) SetSubscribed(account, name string, on bool) error {
	return c.call("SetSubscribed", &args{Account: account, Mailbox: name, On: on}, nil)
}

// Append runs mailstore.Store.Append on the owner.
func (c *Client) Append(account, mailbox string, flags []string, internalDate time.Time, body []byte) (uidValidity, uid uint32, err error) {
	var r appendReply
	err = c.callMessage("Append", &args{Account: account, Mailbox: mailbox, Flags: flags, Date: toWireTime(internalDate)}, body, &r)
	return r.UIDValidity, r.UID, err
}

// Messages runs mailstore.Store.Messages on the owner.
func (c *Client) Messages(account, mailbox string) ([]mailstore.Message, error) {
	var r []wireMessage
	err := c.call("Messages", &args{Account: account, Mailbox: mailbox}, &r)
	return fromWireMessages(r), err
}

// Message runs mailstore.Store.Message on the owner.
func (c *Client) Message(account, mailbox string, uid uint32) (mailstore.Message, error) {
	var r wireMessage
	if err := c.call("Message", &args{Account: account, Mailbox: mailbox, UID: uid}, &r); err != nil {
		return mailstore.Message{}, err
	}
	return r.message(), nil
}

// Body runs mailstore.Store.Body on the owner; the message comes back as
// raw bytes.
func (c *Client) Body(account, mailbox string, uid uint32) ([]byte, error) {
	const method = "Body"
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout())
	defer cancel()
	resp, err := c.post(ctx, method, &args{Account: account, Mailbox: mailbox, UID: uid}, nil, false)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return c.read(method, resp, maxBody)
}

// StoreFlags runs mailstore.Store.StoreFlags on the owner.
func (c *Client) StoreFlags(account, mailbox string, uids []uint32, op mailstore.FlagOp, flags []string, unchangedSince uint64) (updated []mailstore.Message, failed []uint32, err error) {
	var r storeFlagsReply
	err = c.call("StoreFlags", &args{Account: account, Mailbox: mailbox, UIDs: uids, Op: op, Flags: flags, UnchangedSince: unchangedSince}, &r)
	return fromWireMessages(r.Updated), r.Failed, err
}

// Copy runs mailstore.Store.Copy on the owner.
func (c *Client) Copy(account, from string, uids []uint32, to string) (uidValidity uint32, srcUIDs, dstUIDs []uint32, err error) {
	var r transferReply
	err = c.call("Copy", &args{Account: account, Mailbox: from, UIDs: uids, To: to}, &r)
	return r.UIDValidity, r.Src, r.Dst, err
}

// Move runs mailstore.Store.Move on the owner.
func (c *Client) Move(account, from string, uids []uint32, to string) (uidValidity uint32, srcUIDs, dstUIDs []uint32, err error) {
	var r transferReply
	err = c.call("Move", &args{Account: account, Mailbox: from, UIDs: uids, To: to}, &r)
	return r.UIDValidity, r.Src, r.Dst, err
}

// Expunge runs mailstore.Store.Expunge on the owner.
func (c *Client) Expunge(account, mailbox string, uids []uint32) ([]uint32, error) {
	var r []uint32
	err := c.call("Expunge", &args{Account: account, Mailbox: mailbox, UIDs: uids}, &r)
	return r, err
}

// Usage runs mailstore.Store.Usage on the owner.
func (c *Client) Usage(account string) (messages int, bytes int64, err error) {
	var r usageReply
	err = c.call("Usage", &args{Account: account}, &r)
	return r.Messages, r.Bytes, err
}

// call runs a method whose arguments and reply are JSON. A nil out
// discards the reply. On error out is left as it was, so methods return
// zero values with their error, as mailstore does.
func (c *Client) call(method string, a *args, out any) error {
	return c.roundTrip(method, a, nil, false, out)
}

// callMessage runs a method whose request body is a message.
func (c *Client) callMessage(method string, a *args, body []byte, out any) error {
	if len(body) > maxBody {
		return fmt.Errorf("mailrpc: %s on %s: message of %d bytes exceeds %d: %w",
			method, c.addr, len(body), maxBody, mailstore.ErrBadArgument)
	}
	return c.roundTrip(method, a, body, true, out)
}

func (c *Client) roundTrip(method string, a *args, body []byte, raw bool, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout())
	defer cancel()
	resp, err := c.post(ctx, method, a, body, raw)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := c.read(method, resp, maxReply)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("mailrpc: %s on %s: decode reply: %w", method, c.addr, err)
	}
	return nil
}

// post sends one call and returns the response of a successful one; a
// failed one becomes its error. With raw, body is the request body and
// the arguments go in ArgsHeader.
func (c *Client) post(ctx context.Context, method string, a *args, body []byte, raw bool) (*http.Response, error) {
	if err := a.check(); err != nil {
		return nil, fmt.Errorf("mailrpc: %s on %s: %w", method, c.addr, err)
	}
	js, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("mailrpc: %s: encode arguments: %w", method, err)
	}
	ctype := "application/json"
	if raw {
		ctype = "application/octet-stream"
	} else {
		body = js
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+method, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("mailrpc: %s on %s: %w", method, c.addr, err)
	}
	req.Header.Set("Content-Type", ctype)
	if raw {
		req.Header.Set(ArgsHeader, base64.RawURLEncoding.EncodeToString(js))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.unavailable(method, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, c.remoteError(method, resp)
	}
	return resp, nil
}

// read reads a reply body of at most limit bytes. A connection lost
// midway makes the owner unavailable.
func (c *Client) read(method string, resp *http.Response, limit int64) ([]byte, error) {
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("mailrpc: %s on %s: reply of %d bytes exceeds %d", method, c.addr, resp.ContentLength, limit)
	}
	var b bytes.Buffer
	if resp.ContentLength > 0 {
		b.Grow(int(resp.ContentLength) + bytes.MinRead)
	}
	if _, err := b.ReadFrom(io.LimitReader(resp.Body, limit+1)); err != nil {
		return nil, c.unavailable(method, err)
	}
	if int64(b.Len()) > limit {
		return nil, fmt.Errorf("mailrpc: %s on %s: reply exceeds %d bytes", method, c.addr, limit)
	}
	return b.Bytes(), nil
}

func (c *Client) unavailable(method string, err error) error {
	return fmt.Errorf("mailrpc: %s on %s: %w: %w", method, c.addr, ErrUnavailable, err)
}

// remoteError turns a failed call's response into the error the owner's
// store returned: its sentinel, wrapped with the owner's message.
func (c *Client) remoteError(method string, resp *http.Response) error {
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var er errorReply
	if err != nil || json.Unmarshal(b, &er) != nil || er.Code == "" {
		// Not our handler speaking: a proxy, a node mid-shutdown, or one
		// too old to know the method.
		e := fmt.Errorf("mailrpc: %s on %s: HTTP %s", method, c.addr, resp.Status)
		if resp.StatusCode >= 500 {
			return fmt.Errorf("%w: %w", ErrUnavailable, e)
		}
		return e
	}
	re := &remoteError{method: method, addr: c.addr, msg: er.Error}
	switch er.Code {
	case codeClosed:
		// The owner is shutting down: as unavailable as a refused
		// connection, and still the sentinel a local store would give.
		re.is = []error{ErrUnavailable, mailstore.ErrClosed}
	case codeTooLarge:
		re.is = []error{mailstore.ErrBadArgument}
	default:
		for _, s := range sentinels {
			if s.code == er.Code {
				re.is = []error{s.err}
				break
			}
		}
	}
	if re.is == nil && er.Code != codeInternal {
		re.msg = "rejected (" + er.Code + ", HTTP " + strconv.Itoa(resp.StatusCode) + "): " + er.Error
	}
	return re
}

// remoteError is a failure reported by the owner node.
type remoteError struct {
	method, addr, msg string
	is                []error
}

func (e *remoteError) Error() string {
	return "mailrpc: " + e.method + " on " + e.addr + ": " + e.msg
}

func (e *remoteError) Unwrap() []error { return e.is }
