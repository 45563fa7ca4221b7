package mailstore

import "errors"

// Sentinel errors. Public methods wrap them with context; test with
// errors.Is.
var (
	// ErrNoMailbox means the named mailbox (or its account) does not exist.
	ErrNoMailbox = errors.New("no such mailbox")
	// ErrMailboxExists means a mailbox of that name already exists.
	ErrMailboxExists = errors.New("mailbox already exists")
	// ErrNoMessage means no message has that UID in the mailbox.
	ErrNoMessage = errors.New("no such message")
	// ErrDeleteInbox is returned when deleting INBOX, which RFC 3501 forbids.
	ErrDeleteInbox = errors.New("INBOX cannot be deleted")

	// ErrBadAccount means the account name is not a plausible email address.
	ErrBadAccount = errors.New("invalid account name")
	// ErrBadName means the mailbox name is not acceptable.
	ErrBadName = errors.New("invalid mailbox name")
	// ErrBadFlag means a flag is not a valid IMAP flag atom.
	ErrBadFlag = errors.New("invalid flag")
	// ErrBadSpecialUse means the SPECIAL-USE attribute is not one of RFC 6154.
	ErrBadSpecialUse = errors.New("invalid special-use attribute")
	// ErrBadArgument covers other invalid arguments (empty delivery key,
	// unknown FlagOp).
	ErrBadArgument = errors.New("invalid argument")

	// ErrUIDExhausted means the mailbox has used up its 32-bit UID space.
	ErrUIDExhausted = errors.New("mailbox UID space exhausted")
	// ErrOverQuota: the message would put the account over its quota.
	ErrOverQuota = errors.New("over quota")
	// ErrCorrupt means a stored record could not be decoded.
	ErrCorrupt = errors.New("corrupt record")
	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("mailstore closed")
)
