package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultURL is the admin API the commands talk to when none is given.
const DefaultURL = "http://127.0.0.1:8080"

// Error is a non-2xx answer of the API.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

// IsNotFound reports whether err is a 404 answer.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// Client talks to one node's admin API.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client for the API at base (e.g. http://127.0.0.1:8080).
// A base without a scheme gets http://.
func NewClient(base string) *Client {
	if base == "" {
		base = DefaultURL
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{base: strings.TrimRight(base, "/"), http: &http.Client{Timeout: 60 * time.Second}}
}

// WithToken sets the bearer token sent with every request.
func (c *Client) WithToken(token string) *Client { c.token = token; return c }

// Base returns the API URL the client talks to.
func (c *Client) Base() string { return c.base }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the admin API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var eb ErrorBody
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(raw, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(raw))
			if eb.Error == "" {
				eb.Error = resp.Status
			}
		}
		return &Error{Status: resp.StatusCode, Message: eb.Error}
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw, err = io.ReadAll(resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

func esc(s string) string { return url.PathEscape(s) }

// Members lists the cluster's nodes.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var m []Member
	return m, c.do(ctx, "GET", "/v1/cluster/members", nil, &m)
}

// Status returns the answering node's Raft status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, "GET", "/v1/cluster/status", nil, &s)
}

// Leave makes the answering node leave the cluster gracefully and stop.
func (c *Client) Leave(ctx context.Context) error {
	return c.do(ctx, "POST", "/v1/cluster/leave", nil, nil)
}

// RemovePeer removes a node from the Raft configuration.
func (c *Client) RemovePeer(ctx context.Context, name string) error {
	return c.do(ctx, "POST", "/v1/cluster/remove-peer", NameRequest{Name: name}, nil)
}

// TransferLeader moves leadership to name, or to any voter when name is empty.
func (c *Client) TransferLeader(ctx context.Context, name string) (Status, error) {
	var s Status
	return s, c.do(ctx, "POST", "/v1/cluster/transfer-leader", NameRequest{Name: name}, &s)
}

// Domains lists hosted domains.
func (c *Client) Domains(ctx context.Context) ([]Domain, error) {
	var d []Domain
	return d, c.do(ctx, "GET", "/v1/domains", nil, &d)
}

// AddDomain adds a hosted domain.
func (c *Client) AddDomain(ctx context.Context, name string) (Domain, error) {
	var d Domain
	return d, c.do(ctx, "POST", "/v1/domains", Domain{Name: name}, &d)
}

// RemoveDomain removes a hosted domain that has no accounts or aliases left.
func (c *Client) RemoveDomain(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/v1/domains/"+esc(name), nil, nil)
}

// Users lists accounts, of one domain when domain is not empty.
func (c *Client) Users(ctx context.Context, domain string) ([]User, error) {
	var u []User
	p := "/v1/users"
	if domain != "" {
		p += "?domain=" + url.QueryEscape(domain)
	}
	return u, c.do(ctx, "GET", p, nil, &u)
}

// AddUser creates an account.
func (c *Client) AddUser(ctx context.Context, r UserAddRequest) (User, error) {
	var u User
	return u, c.do(ctx, "POST", "/v1/users", r, &u)
}

// User returns one account.
func (c *Client) User(ctx context.Context, address string) (User, error) {
	var u User
	return u, c.do(ctx, "GET", "/v1/users/"+esc(address), nil, &u)
}

// SetPassword replaces an account's password.
func (c *Client) SetPassword(ctx context.Context, address, password string) error {
	return c.do(ctx, "POST", "/v1/users/"+esc(address)+"/password", PasswordRequest{Password: password}, nil)
}

// RemoveUser deletes an account.
func (c *Client) RemoveUser(ctx context.Context, address string) error {
	return c.do(ctx, "DELETE", "/v1/users/"+esc(address), nil, nil)
}

// Aliases lists aliases.
func (c *Client) Aliases(ctx context.Context) ([]Alias, error) {
	var a []Alias
	return a, c.do(ctx, "GET", "/v1/aliases", nil, &a)
}

// AddAlias creates or replaces an alias.
func (c *Client) AddAlias(ctx context.Context, alias string, targets []string) (Alias, error) {
	var a Alias
	return a, c.do(ctx, "POST", "/v1/aliases", Alias{Alias: alias, Targets: targets}, &a)
}

// RemoveAlias deletes an alias.
func (c *Client) RemoveAlias(ctx context.Context, alias string) error {
	return c.do(ctx, "DELETE", "/v1/aliases/"+esc(alias), nil, nil)
}

// Messages lists the INBOX of an account (served by its owner node).
func (c *Client) Messages(ctx context.Context, address string) ([]MessageSummary, error) {
	var m []MessageSummary
	return m, c.do(ctx, "GET", "/v1/mailboxes/"+esc(address)+"/messages", nil, &m)
}

// RawMessage returns one message of the INBOX as stored.
func (c *Client) RawMessage(ctx context.Context, address string, uid uint32) ([]byte, error) {
	var b []byte
	return b, c.do(ctx, "GET", "/v1/mailboxes/"+esc(address)+"/messages/"+strconv.FormatUint(uint64(uid), 10), nil, &b)
}

// Ready reports whether the node says it is ready (joined, leader known, caught up).
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, "GET", "/v1/health/ready", nil, nil)
}

// Queue lists the queued messages, oldest first.
func (c *Client) Queue(ctx context.Context) ([]QueueSummary, error) {
	var q []QueueSummary
	return q, c.do(ctx, "GET", "/v1/queue", nil, &q)
}

// QueueEntry returns one queued message.
func (c *Client) QueueEntry(ctx context.Context, id string) (QueueEntry, error) {
	var e QueueEntry
	return e, c.do(ctx, "GET", "/v1/queue/"+esc(id), nil, &e)
}

// QueueRetry makes the given entries, or all with all, due now.
func (c *Client) QueueRetry(ctx context.Context, all bool, ids ...string) error {
	return c.do(ctx, "POST", "/v1/queue/retry", RetryRequest{IDs: ids, All: all}, nil)
}

// QueueDelete drops an entry without telling the sender.
func (c *Client) QueueDelete(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/v1/queue/"+esc(id), nil, nil)
}

// QueueBounce fails an entry's pending recipients and bounces it to the sender.
func (c *Client) QueueBounce(ctx context.Context, id string) error {
	return c.do(ctx, "POST", "/v1/queue/"+esc(id)+"/bounce", nil, nil)
}

// MailboxStats returns an account's folders and usage (served by its owner).
func (c *Client) MailboxStats(ctx context.Context, address string) (MailboxStats, error) {
	var m MailboxStats
	return m, c.do(ctx, "GET", "/v1/mailboxes/"+esc(address)+"/stats", nil, &m)
}
