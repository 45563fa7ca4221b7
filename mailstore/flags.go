package mailstore

import (
	"fmt"
	"strings"
)

// FlagOp says how StoreFlags combines the given flags with a message's.
type FlagOp int

// Flag operations, mirroring IMAP STORE FLAGS, +FLAGS and -FLAGS. The zero
// value is deliberately invalid so a forgotten op cannot wipe flags.
const (
	FlagsSet FlagOp = iota + 1
	FlagsAdd
	FlagsRemove
)

// System flags the store itself interprets.
const (
	flagSeen    = `\Seen`
	flagDeleted = `\Deleted`
	flagRecent  = `\Recent` // session state in IMAP, never stored
)

const maxFlagLen = 256

// normalizeFlags validates flags, drops \Recent and removes duplicates
// (compared case-insensitively; the first spelling wins). Flags must be IMAP
// atoms, optionally preceded by "\".
func normalizeFlags(flags []string) ([]string, error) {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if !validFlag(f) {
			return nil, fmt.Errorf("%w: %q", ErrBadFlag, f)
		}
		if strings.EqualFold(f, flagRecent) || hasFlag(out, f) {
			continue
		}
		out = append(out, f)
	}
	return out, nil
}

// validFlag reports whether f is `\`? atom, where atom excludes the IMAP
// atom-specials: ( ) { SP CTL % * " \ ].
func validFlag(f string) bool {
	atom := strings.TrimPrefix(f, `\`)
	if atom == "" || len(f) > maxFlagLen {
		return false
	}
	for i := 0; i < len(atom); i++ {
		c := atom[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// hasFlag reports whether flags contains f. IMAP flags are compared
// case-insensitively (system flags by RFC 3501; keywords too, as most
// servers and clients do, so "$Junk" and "$junk" are one keyword).
func hasFlag(flags []string, f string) bool {
	for _, g := range flags {
		if strings.EqualFold(g, f) {
			return true
		}
	}
	return false
}

// applyFlags returns cur combined with flags by op and whether the set of
// flags changed. flags must already be normalised. cur is not modified.
func applyFlags(cur []string, op FlagOp, flags []string) ([]string, bool) {
	var next []string
	switch op {
	case FlagsSet:
		next = flags
	case FlagsAdd:
		next = append([]string(nil), cur...)
		for _, f := range flags {
			if !hasFlag(next, f) {
				next = append(next, f)
			}
		}
	case FlagsRemove:
		for _, f := range cur {
			if !hasFlag(flags, f) {
				next = append(next, f)
			}
		}
	}
	if sameFlags(cur, next) {
		return cur, false
	}
	return append([]string(nil), next...), true
}

// sameFlags reports whether a and b hold the same flags, ignoring order and
// case. Both are free of duplicates.
func sameFlags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, f := range a {
		if !hasFlag(b, f) {
			return false
		}
	}
	return true
}

func (op FlagOp) valid() bool { return op >= FlagsSet && op <= FlagsRemove }

// StoreFlags changes the flags of the messages of uids (IMAP UID STORE).
// UIDs that do not exist are ignored. With unchangedSince > 0 it implements
// RFC 7162 UNCHANGEDSINCE: messages whose MODSEQ is greater are left alone
// and returned in failed. updated holds the resulting state of every other
// existing message, including those the operation did not change (their
// ModSeq is then unchanged), so the IMAP layer can answer with FETCH
// responses directly. All messages changed by one call share one new
// MODSEQ, which becomes the mailbox's HIGHESTMODSEQ.
func (s *Store) StoreFlags(account, mailbox string, uids []uint32, op FlagOp, flags []string, unchangedSince uint64) (updated []Message, failed []uint32, err error) {
	a, n, err := normalizeBoth(account, mailbox)
	if err != nil {
		return nil, nil, fmt.Errorf("mailstore: store flags: %w", err)
	}
	fl, err := normalizeFlags(flags)
	if err == nil && !op.valid() {
		err = fmt.Errorf("%w: flag op %d", ErrBadArgument, op)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("mailstore: store flags in %s %q: %w", a, n, err)
	}
	err = s.update(a, func(t *tx) error {
		updated, failed = nil, nil
		id, box, err := t.lookup(n)
		if err != nil {
			return err
		}
		var modSeq uint64 // allocated on the first actual change
		return t.eachMessage(id, sortedUIDs(uids), func(uid uint32, m *messageRecord) error {
			if unchangedSince > 0 && m.ModSeq > unchangedSince {
				failed = append(failed, uid)
				return nil
			}
			next, changed := applyFlags(m.Flags, op, fl)
			if changed {
				if modSeq == 0 {
					modSeq = t.bumpModSeq(id, box)
				}
				old := m.Flags
				m.Flags, m.ModSeq = next, modSeq
				if err := t.updateMessage(id, box, uid, old, m); err != nil {
					return err
				}
			}
			updated = append(updated, m.message(uid))
			return nil
		})
	})
	if err != nil {
		return nil, nil, fmt.Errorf("mailstore: store flags in %s %q: %w", a, n, err)
	}
	return updated, failed, nil
}
