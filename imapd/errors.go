package imapd

import (
	"errors"

	"github.com/emersion/go-imap/v2"

	"clustermail/mailstore"
)

// Answers that do not depend on the store error.
var (
	errNoSelection = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent,
		Text: "The selected mailbox no longer exists"}
	errReadOnly = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
		Text: "Mailbox is read-only (EXAMINE)"}
	errOverQuota = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota,
		Text: "Quota exceeded"}
)

// noSuch says what a missing mailbox means to the command that met it:
// a source or target that must exist (NONEXISTENT), or the destination of
// APPEND, COPY and MOVE, which the client may create (TRYCREATE).
type noSuch int

const (
	missingIsNonExistent noSuch = iota
	missingIsTryCreate
)

// fail turns a store error into the answer the client gets, logging what
// the client cannot be told. op names the command for the log.
func (s *session) fail(op string, err error, missing noSuch) error {
	var imapErr *imap.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &imapErr):
		return err
	case errors.Is(err, ErrUnavailable):
		s.log.Info("mailbox store unavailable", "op", op, "err", err)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
			Text: "Mailbox server unavailable, try again later"}
	case errors.Is(err, mailstore.ErrNoMailbox):
		if missing == missingIsTryCreate {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate,
				Text: "No such mailbox"}
		}
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent,
			Text: "No such mailbox"}
	case errors.Is(err, mailstore.ErrMailboxExists):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists,
			Text: "Mailbox already exists"}
	case errors.Is(err, mailstore.ErrDeleteInbox):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
			Text: "INBOX cannot be deleted"}
	case errors.Is(err, mailstore.ErrBadName):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
			Text: "Invalid mailbox name"}
	case errors.Is(err, mailstore.ErrBadSpecialUse):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "USEATTR",
			Text: "Unsupported special-use attribute"}
	case errors.Is(err, mailstore.ErrBadFlag):
		return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug,
			Text: "Invalid flag"}
	case errors.Is(err, mailstore.ErrUIDExhausted):
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
			Text: "Mailbox UID space exhausted"}
	case errors.Is(err, mailstore.ErrOverQuota):
		return errOverQuota
	default:
		s.log.Error("mailbox store failed", "op", op, "err", err)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug,
			Text: "Internal server error"}
	}
}
