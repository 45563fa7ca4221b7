package node

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"clustermail/api"
	"clustermail/backup"
	"clustermail/directory"
	"clustermail/mailstore"
)

// Mailbox export and import in mboxrd (package backup). Both run on the
// owner node (onOwner forwards them there over the cluster port) and
// stream: a message at a time is in memory, whatever the folder's size.

// maxImportMessage bounds one message of an imported mbox file, so that a
// file that is not mbox, or has lost its "From " lines, cannot take all
// memory. Far above any message SMTP or IMAP would accept.
const maxImportMessage = 256 << 20

// folderParam is the folder a request names, INBOX by default.
func folderParam(r *http.Request) string {
	if f := r.URL.Query().Get("folder"); f != "" {
		return f
	}
	return mailstore.Inbox
}

// handleMailboxExport writes one folder as an mbox stream. The folder's
// size goes in headers first (for progress bars); the trailers say whether
// every message was written, since the status line is sent long before.
func (n *Node) handleMailboxExport(w http.ResponseWriter, r *http.Request) {
	addr := directory.Normalize(r.PathValue("address"))
	folder := folderParam(r)
	if err := n.mail.EnsureAccount(addr); err != nil {
		writeErr(w, 500, err)
		return
	}
	msgs, err := n.mail.Messages(addr, folder)
	if errors.Is(err, mailstore.ErrNoMailbox) {
		writeErr(w, http.StatusNotFound, fmt.Errorf("%s has no folder %q", addr, folder))
		return
	}
	if err != nil {
		writeErr(w, 500, err)
		return
	}
	var total int64
	for _, m := range msgs {
		total += m.Size
	}
	h := w.Header()
	h.Set("Content-Type", api.MboxContentType)
	h.Set(api.HeaderExportMessages, strconv.Itoa(len(msgs)))
	h.Set(api.HeaderExportBytes, strconv.FormatInt(total, 10))
	h.Set("Trailer", api.TrailerExportMessages+", "+api.TrailerExportError)
	w.WriteHeader(http.StatusOK)

	mw := backup.NewMboxWriter(w)
	written := 0
	fail := func(err error) {
		n.log.Warn("mailbox export stopped", "account", addr, "folder", folder, "written", written, "err", err)
		h.Set(api.TrailerExportError, err.Error())
	}
	for _, m := range msgs {
		body, err := n.mail.Body(addr, folder, m.UID)
		if errors.Is(err, mailstore.ErrNoMessage) {
			continue // expunged since the listing
		}
		if err != nil {
			fail(err)
			return
		}
		err = mw.Write(backup.Message{Sender: backup.SenderOf(body), Date: m.InternalDate, Flags: m.Flags, Data: body})
		if err != nil {
			fail(err) // most likely the client went away
			return
		}
		written++
	}
	if err := mw.Flush(); err != nil {
		fail(err)
		return
	}
	h.Set(api.TrailerExportMessages, strconv.Itoa(written))
}

// handleMailboxImport appends the messages of an mbox stream to a folder,
// creating it (and its parents) if needed, each with its flags and
// internal date. Messages are stored as they arrive: if the stream breaks
// or a message is malformed, those before it stay imported, and the error
// says how many there were. Importing the same file twice stores its
// messages twice. The account's quota is not enforced (this is an
// operator's restore), but the answer reports the usage against it.
func (n *Node) handleMailboxImport(w http.ResponseWriter, r *http.Request) {
	addr := directory.Normalize(r.PathValue("address"))
	acc, _, _ := n.dir.Account(addr)
	folder := folderParam(r)
	out := api.MailboxImport{Address: addr, Node: n.cfg.Name, Folder: folder, Quota: acc.Quota}
	created, err := n.ensureFolder(addr, folder)
	out.Created = created
	if err != nil {
		code := 500
		if errors.Is(err, mailstore.ErrBadName) {
			code = http.StatusBadRequest
		}
		writeErr(w, code, fmt.Errorf("import into %s %q: %w", addr, folder, err))
		return
	}
	rd := backup.NewMboxReader(r.Body, maxImportMessage)
	for {
		m, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			n.log.Warn("mailbox import stopped", "account", addr, "folder", folder, "imported", out.Messages, "err", err)
			writeErr(w, http.StatusBadRequest, fmt.Errorf("import into %s %q stopped after %d messages (they stay imported): %w",
				addr, folder, out.Messages, err))
			return
		}
		if _, _, err := n.mail.Append(addr, folder, m.Flags, m.Date, m.Data); err != nil {
			writeErr(w, 500, fmt.Errorf("import into %s %q stopped after %d messages (they stay imported): %w",
				addr, folder, out.Messages, err))
			return
		}
		out.Messages++
		out.Bytes += int64(len(m.Data))
	}
	if _, out.Used, err = n.mail.Usage(addr); err != nil {
		writeErr(w, 500, err)
		return
	}
	n.log.Info("mailbox import", "account", addr, "folder", folder, "messages", out.Messages, "bytes", out.Bytes)
	writeJSON(w, 200, out)
}

// ensureFolder creates folder and the parents it lacks, and returns those
// it created. The account gets its default folders first.
func (n *Node) ensureFolder(addr, folder string) ([]string, error) {
	if err := n.mail.EnsureAccount(addr); err != nil {
		return nil, err
	}
	var created []string
	parts := strings.Split(folder, mailstore.Separator)
	for i := range parts {
		name := strings.Join(parts[:i+1], mailstore.Separator)
		err := n.mail.CreateMailbox(addr, name, "")
		switch {
		case err == nil:
			created = append(created, name)
		case errors.Is(err, mailstore.ErrMailboxExists):
		default:
			return created, err
		}
	}
	return created, nil
}
