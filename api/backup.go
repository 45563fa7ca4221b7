package api

import (
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

	"clustermail/backup"
)

// Backups: the Raft snapshot (directory and queue) and mailbox export and
// import. These calls stream their data, so they are not bounded by the
// client's usual request timeout: bound them with ctx.

// SnapshotInfo describes a snapshot saved from the cluster or restored
// into it.
type SnapshotInfo struct {
	Index   uint64    `json:"index"` // last Raft log index the state includes
	Term    uint64    `json:"term"`
	Size    int64     `json:"size"` // bytes of state data
	Created time.Time `json:"created"`
	Node    string    `json:"node"` // the leader that took it
	Version string    `json:"version,omitempty"`
	// RestoredBy and LogIndex are set by a restore: the leader that
	// restored it, and the Raft index the cluster's log goes on from.
	RestoredBy string `json:"restored_by,omitempty"`
	LogIndex   uint64 `json:"log_index,omitempty"`
}

// SnapshotInfoOf returns the SnapshotInfo of a snapshot file's header.
func SnapshotInfoOf(h backup.SnapshotHeader) SnapshotInfo {
	return SnapshotInfo{Index: h.Index, Term: h.Term, Size: h.Size, Created: h.Created, Node: h.Node, Version: h.Version}
}

// MailboxImport is the outcome of an import into one folder.
type MailboxImport struct {
	Address  string   `json:"address"`
	Node     string   `json:"node"` // the owner node that stored the messages
	Folder   string   `json:"folder"`
	Messages int      `json:"messages"`
	Bytes    int64    `json:"bytes"`
	Created  []string `json:"created,omitempty"` // folders the import created
	Quota    int64    `json:"quota"`             // bytes, 0 = unlimited
	Used     int64    `json:"used"`              // the account's bytes after the import
}

// Headers of an export: the owner announces the folder's size before the
// mbox, and says in trailers whether the stream is complete.
const (
	HeaderExportMessages  = "Clustermail-Messages"
	HeaderExportBytes     = "Clustermail-Bytes"
	TrailerExportMessages = "Clustermail-Export-Messages" // messages written; missing if the stream broke
	TrailerExportError    = "Clustermail-Export-Error"    // why the owner stopped early
)

// MboxContentType is the media type of mbox streams (RFC 4155).
const MboxContentType = "application/mbox"

// SaveSnapshot asks the leader for a snapshot of the replicated state and
// writes it to w as a snapshot file (see package backup), checking it as
// it streams: an error means w holds no usable file.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer) (SnapshotInfo, error) {
	resp, err := c.stream(ctx, "GET", "/v1/cluster/snapshot", nil, 0, "")
	if err != nil {
		return SnapshotInfo{}, err
	}
	defer resp.Body.Close()
	h, err := backup.VerifySnapshot(io.TeeReader(resp.Body, w))
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("receive snapshot: %w", err)
	}
	return SnapshotInfoOf(h), nil
}

// RestoreSnapshot uploads a snapshot file to the leader, which checks it
// and replaces the replicated state of every node with it. size is the
// file's length, or -1 if unknown.
func (c *Client) RestoreSnapshot(ctx context.Context, file io.Reader, size int64) (SnapshotInfo, error) {
	resp, err := c.stream(ctx, "POST", "/v1/cluster/snapshot/restore", file, size, "application/octet-stream")
	if err != nil {
		return SnapshotInfo{}, err
	}
	defer resp.Body.Close()
	var out SnapshotInfo
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return SnapshotInfo{}, fmt.Errorf("decode answer of the restore: %w", err)
	}
	return out, nil
}

// MailboxExport is an export in progress: the mbox stream of one folder.
// Read it to the end: at the end, Read reports an error instead of io.EOF
// if the owner could not write every message. Close it when done.
type MailboxExport struct {
	Folder   string
	Messages int   // messages in the folder when the export started
	Bytes    int64 // their stored size (the mbox is a little larger)

	resp *http.Response
}

// ExportMailbox starts the export of one folder of an account, served by
// the node that owns it.
func (c *Client) ExportMailbox(ctx context.Context, address, folder string) (*MailboxExport, error) {
	resp, err := c.stream(ctx, "GET", "/v1/mailboxes/"+esc(address)+"/export?folder="+url.QueryEscape(folder), nil, 0, "")
	if err != nil {
		return nil, err
	}
	e := &MailboxExport{Folder: folder, resp: resp}
	e.Messages, _ = strconv.Atoi(resp.Header.Get(HeaderExportMessages))
	e.Bytes, _ = strconv.ParseInt(resp.Header.Get(HeaderExportBytes), 10, 64)
	return e, nil
}

// Read reads the mbox stream.
func (e *MailboxExport) Read(p []byte) (int, error) {
	n, err := e.resp.Body.Read(p)
	if errors.Is(err, io.EOF) {
		// Trailers are only known once the body has been read.
		if msg := e.resp.Trailer.Get(TrailerExportError); msg != "" {
			return n, fmt.Errorf("export of %q stopped: %s", e.Folder, msg)
		}
		if e.resp.Trailer.Get(TrailerExportMessages) == "" {
			return n, fmt.Errorf("export of %q: the stream ended early", e.Folder)
		}
	}
	return n, err
}

// Close ends the export.
func (e *MailboxExport) Close() error { return e.resp.Body.Close() }

// ImportMailbox streams an mbox file into one folder of an account (INBOX
// if folder is empty), creating the folder if needed. The owner node
// appends each message as it arrives. size is the length of mbox, or -1.
func (c *Client) ImportMailbox(ctx context.Context, address, folder string, mbox io.Reader, size int64) (MailboxImport, error) {
	p := "/v1/mailboxes/" + esc(address) + "/import"
	if folder != "" {
		p += "?folder=" + url.QueryEscape(folder)
	}
	resp, err := c.stream(ctx, "POST", p, mbox, size, MboxContentType)
	if err != nil {
		return MailboxImport{}, err
	}
	defer resp.Body.Close()
	var out MailboxImport
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return MailboxImport{}, fmt.Errorf("decode answer of the import: %w", err)
	}
	return out, nil
}

// stream sends a request whose body or answer may be large and slow. It
// has no overall timeout, unlike the JSON calls: ctx bounds it. A non-2xx
// answer becomes an *Error; otherwise the caller closes the body.
func (c *Client) stream(ctx context.Context, method, path string, body io.Reader, size int64, ctype string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size // -1: unknown, sent chunked
		req.Header.Set("Content-Type", ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := &http.Client{Transport: c.http.Transport, CheckRedirect: c.http.CheckRedirect, Jar: c.http.Jar}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the admin API at %s: %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var eb ErrorBody
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(raw, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(raw))
			if eb.Error == "" {
				eb.Error = resp.Status
			}
		}
		return nil, &Error{Status: resp.StatusCode, Message: eb.Error}
	}
	return resp, nil
}
