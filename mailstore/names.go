package mailstore

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Inbox is the canonical spelling of the case-insensitive INBOX name.
const Inbox = "INBOX"

// Separator is the mailbox hierarchy separator.
const Separator = "/"

const (
	maxAccountLen = 320  // RFC 5321 limits: 64 local + @ + 255 domain
	maxNameLen    = 1024 // bytes of UTF-8; far beyond what clients use
	maxKeyLen     = 1024 // Deliver idempotency key
)

// normalizeAccount lowercases an account name and checks that it looks like
// an email address: non-empty, valid UTF-8, containing "@", no spaces or
// control characters.
func normalizeAccount(account string) (string, error) {
	if !utf8.ValidString(account) { // before ToLower, which would mask it
		return "", fmt.Errorf("%w: %q", ErrBadAccount, account)
	}
	a := strings.ToLower(account)
	if a == "" || len(a) > maxAccountLen || !strings.Contains(a, "@") {
		return "", fmt.Errorf("%w: %q", ErrBadAccount, account)
	}
	for _, r := range a {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return "", fmt.Errorf("%w: %q", ErrBadAccount, account)
		}
	}
	return a, nil
}

// normalizeMailbox validates a mailbox name (UTF-8; the IMAP layer decodes
// modified UTF-7) and canonicalises a leading INBOX component, which IMAP
// treats case-insensitively, so "inbox/x" and "INBOX/x" are one mailbox.
// Empty components (leading, trailing or doubled "/"), control characters
// and the LIST wildcards "*" and "%" are rejected.
func normalizeMailbox(name string) (string, error) {
	if name == "" || len(name) > maxNameLen || !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: %q", ErrBadName, name)
	}
	for _, part := range strings.Split(name, Separator) {
		if part == "" {
			return "", fmt.Errorf("%w: %q has an empty component", ErrBadName, name)
		}
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == '*' || r == '%' || r == utf8.RuneError {
			return "", fmt.Errorf("%w: %q", ErrBadName, name)
		}
	}
	first, rest, _ := strings.Cut(name, Separator)
	if strings.EqualFold(first, Inbox) {
		if rest == "" {
			return Inbox, nil
		}
		return Inbox + Separator + rest, nil
	}
	return name, nil
}

// isChild reports whether name is strictly below parent in the hierarchy.
func isChild(name, parent string) bool {
	return len(name) > len(parent) && strings.HasPrefix(name, parent) && name[len(parent):len(parent)+1] == Separator
}

// specialUses are the RFC 6154 attributes, keyed by their lowercase form.
var specialUses = map[string]string{
	`\all`:     `\All`,
	`\archive`: `\Archive`,
	`\drafts`:  `\Drafts`,
	`\flagged`: `\Flagged`,
	`\junk`:    `\Junk`,
	`\sent`:    `\Sent`,
	`\trash`:   `\Trash`,
}

// normalizeSpecialUse accepts "" or an RFC 6154 attribute in any case and
// returns its canonical spelling.
func normalizeSpecialUse(use string) (string, error) {
	if use == "" {
		return "", nil
	}
	if canon, ok := specialUses[strings.ToLower(use)]; ok {
		return canon, nil
	}
	return "", fmt.Errorf("%w: %q", ErrBadSpecialUse, use)
}
