package imapd

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"clustermail/mailstore"
)

// view is a session's picture of its selected mailbox: what the client has
// been told. Sequence number i+1 is uids[i]; sequence numbers change only
// when the client is sent EXPUNGE or EXISTS.
type view struct {
	name        string
	id          uint64 // follows the mailbox through renames
	uidValidity uint32
	readOnly    bool
	gone        bool // deleted by this session: commands answer NO

	uids []uint32 // ascending
	mods []uint64 // MODSEQ last reported for uids[i]

	synced  uint64      // the mailbox's HIGHESTMODSEQ the view reflects
	dirty   bool        // a change signal arrived since the last sync
	ghosts  bool        // expunged messages not yet reported (EXPUNGE was not allowed)
	flags   []imap.Flag // the FLAGS last sent
	sub     <-chan struct{}
	cancel  func()
	lostSub bool // the subscription closed: check on every poll

	searchRes []uint32 // SEARCHRES ($), as UIDs
}

// systemFlags are always in FLAGS; keywords in use are added.
var systemFlags = []imap.Flag{imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagSeen, imap.FlagDraft}

// Select opens a mailbox: the view starts from the store's message list,
// read after subscribing to changes so that none is missed in between.
func (sess *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	sess.unselect()
	info, err := sess.store.Mailbox(sess.account, name)
	if err != nil {
		return nil, sess.fail("select", err, missingIsNonExistent)
	}
	sub, cancel := sess.store.Subscribe(sess.account)
	msgs, err := sess.store.Messages(sess.account, info.Name)
	if err != nil {
		cancel()
		return nil, sess.fail("select", err, missingIsNonExistent)
	}
	v := &view{
		name:        info.Name,
		id:          info.ID,
		uidValidity: info.UIDValidity,
		readOnly:    options.ReadOnly,
		uids:        make([]uint32, len(msgs)),
		mods:        make([]uint64, len(msgs)),
		sub:         sub,
		cancel:      cancel,
	}
	data := &imap.SelectData{
		NumMessages:   uint32(len(msgs)),
		UIDNext:       imap.UID(info.UIDNext),
		UIDValidity:   info.UIDValidity,
		HighestModSeq: info.HighestModSeq,
	}
	for i, m := range msgs {
		v.uids[i], v.mods[i] = m.UID, m.ModSeq
		// The list was read after the record: it may be newer.
		data.HighestModSeq = max(data.HighestModSeq, m.ModSeq)
		data.UIDNext = max(data.UIDNext, imap.UID(m.UID)+1)
		if data.FirstUnseenSeqNum == 0 && !hasFlag(m.Flags, imap.FlagSeen) {
			data.FirstUnseenSeqNum = uint32(i + 1)
		}
	}
	v.synced = data.HighestModSeq
	v.flags = mailboxFlags(msgs)
	data.Flags = v.flags
	data.PermanentFlags = append(slices.Clone(v.flags), imap.FlagWildcard)
	if v.readOnly {
		data.PermanentFlags = nil
	}
	sess.sel = v
	return data, nil
}

// mailboxFlags returns the system flags and the keywords in use, sorted.
func mailboxFlags(msgs []mailstore.Message) []imap.Flag {
	flags := slices.Clone(systemFlags)
	seen := map[string]bool{}
	for _, f := range systemFlags {
		seen[strings.ToLower(string(f))] = true
	}
	for _, m := range msgs {
		for _, f := range m.Flags {
			if k := strings.ToLower(f); !seen[k] {
				seen[k] = true
				flags = append(flags, imap.Flag(f))
			}
		}
	}
	slices.Sort(flags[len(systemFlags):])
	return flags
}

// unionFlags returns old followed by the flags of add it lacks.
func unionFlags(old, add []imap.Flag) []imap.Flag {
	out := slices.Clone(old)
	for _, f := range add {
		if !slices.ContainsFunc(out, func(g imap.Flag) bool { return strings.EqualFold(string(f), string(g)) }) {
			out = append(out, f)
		}
	}
	return out
}

func (sess *session) Unselect() error {
	sess.unselect()
	return nil
}

func (sess *session) unselect() {
	if sess.sel != nil {
		sess.sel.cancel()
		sess.sel = nil
	}
}

// selected returns the view, or an error if its mailbox was deleted by
// this session.
func (sess *session) selected() (*view, error) {
	if sess.sel == nil || sess.sel.gone {
		return nil, errNoSelection
	}
	return sess.sel, nil
}

// Poll reports changes made by others since the last command, when the
// store has signalled any.
func (sess *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	v := sess.sel
	if v == nil || v.gone {
		return nil
	}
	select {
	case _, ok := <-v.sub:
		v.dirty = true
		if !ok {
			v.lostSub, v.sub = true, nil
		}
	default:
	}
	if !v.dirty && !v.lostSub && !(v.ghosts && allowExpunge) {
		return nil
	}
	return sess.sync(w, allowExpunge)
}

// Idle reports changes as soon as the store signals them, until stop.
func (sess *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	v := sess.sel
	if v == nil || v.gone {
		<-stop
		return nil
	}
	if err := sess.Poll(w, true); err != nil {
		return err
	}
	for {
		select {
		case <-stop:
			return nil
		case _, ok := <-v.sub:
			v.dirty = true
			if !ok {
				// A nil channel blocks: wait for DONE, then poll as usual.
				v.lostSub, v.sub = true, nil
			}
			if err := sess.sync(w, true); err != nil {
				return err
			}
		}
	}
}

// sync compares the view with the store and tells the client the
// difference: EXPUNGE (if allowed), FLAGS for new keywords, FETCH for
// changed flags, EXISTS for new messages. A store that cannot be read
// leaves the view as it is, to be synced on a later poll.
func (sess *session) sync(w *imapserver.UpdateWriter, allowExpunge bool) error {
	v := sess.sel
	info, err := sess.store.Mailbox(sess.account, v.name)
	if errors.Is(err, mailstore.ErrNoMailbox) {
		info, err = sess.findRenamed(v)
	}
	if err != nil {
		sess.log.Debug("cannot sync selected mailbox", "mailbox", v.name, "err", err)
		return nil
	}
	if info.ID != v.id || info.UIDValidity != v.uidValidity {
		return sess.bye("Selected mailbox was replaced (UIDVALIDITY changed)")
	}
	v.name = info.Name
	if info.HighestModSeq == v.synced && !(v.ghosts && allowExpunge) {
		v.dirty = false
		return nil
	}
	msgs, err := sess.store.Messages(sess.account, v.name)
	if err != nil {
		sess.log.Debug("cannot sync selected mailbox", "mailbox", v.name, "err", err)
		return nil
	}
	v.dirty = false
	synced := info.HighestModSeq
	cur := make(map[uint32]*mailstore.Message, len(msgs))
	for i := range msgs {
		cur[msgs[i].UID] = &msgs[i]
		synced = max(synced, msgs[i].ModSeq)
	}

	v.ghosts = false
	for i := len(v.uids) - 1; i >= 0; i-- {
		if cur[v.uids[i]] != nil {
			continue
		}
		if !allowExpunge {
			v.ghosts = true
			continue
		}
		// Highest first, so the numbers still to send stay valid.
		if err := w.WriteExpunge(uint32(i + 1)); err != nil {
			return err
		}
		v.uids = slices.Delete(v.uids, i, i+1)
		v.mods = slices.Delete(v.mods, i, i+1)
	}

	if flags := unionFlags(v.flags, mailboxFlags(msgs)); len(flags) > len(v.flags) {
		// New keywords. FLAGS never shrinks within a selection: clients
		// may have cached the old list.
		v.flags = flags
		if err := w.WriteMailboxFlags(flags); err != nil {
			return err
		}
	}

	condStore := sess.condStore()
	for i, uid := range v.uids {
		m := cur[uid]
		if m == nil || m.ModSeq == v.mods[i] {
			continue
		}
		v.mods[i] = m.ModSeq
		modSeq := uint64(0)
		if condStore {
			modSeq = m.ModSeq
		}
		if err := w.WriteMessageFlagsModSeq(uint32(i+1), imap.UID(uid), imapFlags(m.Flags), modSeq); err != nil {
			return err
		}
	}

	var last uint32
	if n := len(v.uids); n > 0 {
		last = v.uids[n-1]
	}
	added := false
	for _, m := range msgs {
		if m.UID > last {
			v.uids = append(v.uids, m.UID)
			v.mods = append(v.mods, m.ModSeq)
			added = true
		}
	}
	if added {
		if err := w.WriteNumMessages(uint32(len(v.uids))); err != nil {
			return err
		}
	}
	v.synced = synced
	return nil
}

// findRenamed finds the selected mailbox under a new name after another
// session renamed it.
func (sess *session) findRenamed(v *view) (mailstore.MailboxInfo, error) {
	boxes, err := sess.store.Mailboxes(sess.account)
	if err != nil {
		return mailstore.MailboxInfo{}, err
	}
	for _, b := range boxes {
		if b.ID == v.id {
			return b, nil
		}
	}
	return mailstore.MailboxInfo{}, sess.bye("Selected mailbox was deleted")
}

// bye ends the session from within a command or IDLE: the mailbox under
// the client's view went away, and IMAP has no other way to say so.
func (sess *session) bye(text string) error {
	sess.log.Info("ending session", "reason", text)
	_ = sess.conn.Bye(text)
	return fmt.Errorf("imap session ended: %s", text)
}

// condStore reports whether the client enabled CONDSTORE, so that FETCH
// responses carry MODSEQ.
func (sess *session) condStore() bool {
	return sess.conn.EnabledCaps().Has(imap.CapCondStore)
}

// resolve returns the positions in the view (ascending, unique) of the
// messages numSet names. "*" is the last message; "$" is the saved search
// result. A sequence number beyond the view is a client error.
func (v *view) resolve(numSet imap.NumSet) ([]int, error) {
	n := len(v.uids)
	mark := make([]bool, n)
	switch set := numSet.(type) {
	case imap.SeqSet:
		for _, r := range set {
			start, stop := r.Start, r.Stop
			if start == 0 || stop == 0 {
				if n == 0 {
					continue // "*" in an empty mailbox names nothing
				}
			}
			if start == 0 {
				start = uint32(n)
			}
			if stop == 0 {
				stop = uint32(n)
			}
			if start > stop {
				start, stop = stop, start
			}
			if stop > uint32(n) {
				return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug,
					Text: fmt.Sprintf("No message with sequence number %d (%d messages)", stop, n)}
			}
			for i := start; i <= stop; i++ {
				mark[i-1] = true
			}
		}
	case imap.UIDSet:
		if imap.IsSearchRes(set) {
			set = imap.UIDSet{}
			for _, uid := range v.searchRes {
				set.AddNum(imap.UID(uid))
			}
		}
		for _, r := range set {
			if n == 0 {
				break
			}
			start, stop := uint32(r.Start), uint32(r.Stop)
			if start == 0 {
				start = v.uids[n-1]
			}
			if stop == 0 {
				stop = v.uids[n-1]
			}
			if start > stop {
				start, stop = stop, start
			}
			for i := sort.Search(n, func(i int) bool { return v.uids[i] >= start }); i < n && v.uids[i] <= stop; i++ {
				mark[i] = true
			}
		}
	default:
		return nil, fmt.Errorf("imapd: unknown number set %T", numSet)
	}
	var out []int
	for i, ok := range mark {
		if ok {
			out = append(out, i)
		}
	}
	return out, nil
}

// uidsAt returns the UIDs at the given view positions.
func (v *view) uidsAt(pos []int) []uint32 {
	out := make([]uint32, len(pos))
	for i, p := range pos {
		out[i] = v.uids[p]
	}
	return out
}

// indexOf returns the position of uid in the view, or -1.
func (v *view) indexOf(uid uint32) int {
	i, ok := slices.BinarySearch(v.uids, uid)
	if !ok {
		return -1
	}
	return i
}

// remove drops uids from the view, reporting each through expunge with its
// sequence number at the time (highest first, so the others stay valid).
func (v *view) remove(uids []uint32, expunge func(seq uint32) error) error {
	pos := make([]int, 0, len(uids))
	for _, uid := range uids {
		if i := v.indexOf(uid); i >= 0 {
			pos = append(pos, i)
		}
	}
	slices.Sort(pos)
	for j := len(pos) - 1; j >= 0; j-- {
		i := pos[j]
		v.uids = slices.Delete(v.uids, i, i+1)
		v.mods = slices.Delete(v.mods, i, i+1)
		if err := expunge(uint32(i + 1)); err != nil {
			return err
		}
	}
	return nil
}

// Expunge removes the messages flagged \Deleted (of uids, for UID
// EXPUNGE). In a read-only mailbox it does nothing, which is also what
// CLOSE needs there; UID EXPUNGE is refused.
func (sess *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	v, err := sess.selected()
	if err != nil {
		return err
	}
	var only []uint32 // nil: every \Deleted message
	if uids != nil {
		pos, err := v.resolve(*uids)
		if err != nil {
			return err
		}
		only = v.uidsAt(pos)
		if len(only) == 0 {
			return nil // not nil: that would expunge everything
		}
	}
	if v.readOnly {
		if uids != nil {
			return errReadOnly
		}
		return nil
	}
	gone, err := sess.store.Expunge(sess.account, v.name, only)
	if err != nil {
		return sess.fail("expunge", err, missingIsNonExistent)
	}
	return v.remove(gone, w.WriteExpunge)
}

// Copy copies messages (COPYUID from the store's UIDs), refusing to go
// over quota.
func (sess *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	v, err := sess.selected()
	if err != nil {
		return nil, err
	}
	pos, err := v.resolve(numSet)
	if err != nil || len(pos) == 0 {
		return nil, err
	}
	uids := v.uidsAt(pos)
	err = sess.checkQuota(func() (int64, error) {
		msgs, err := sess.messages(v, uids)
		var size int64
		for _, m := range msgs {
			size += m.Size
		}
		return size, err
	})
	if err != nil {
		return nil, err
	}
	uidValidity, src, dst, err := sess.store.Copy(sess.account, v.name, uids, dest)
	if err != nil {
		return nil, sess.fail("copy", err, missingIsTryCreate)
	}
	return copyData(uidValidity, src, dst), nil
}

// Move moves messages (RFC 6851): COPYUID first, then EXPUNGE for each.
func (sess *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	v, err := sess.selected()
	if err != nil {
		return err
	}
	if v.readOnly {
		return errReadOnly
	}
	pos, err := v.resolve(numSet)
	if err != nil || len(pos) == 0 {
		return err
	}
	uidValidity, src, dst, err := sess.store.Move(sess.account, v.name, v.uidsAt(pos), dest)
	if err != nil {
		return sess.fail("move", err, missingIsTryCreate)
	}
	if data := copyData(uidValidity, src, dst); data != nil {
		if err := w.WriteCopyData(data); err != nil {
			return err
		}
	}
	return v.remove(src, w.WriteExpunge)
}

// messages returns the current metadata of those of uids (ascending) that
// still exist: one read per message for a few, the whole list for many.
func (sess *session) messages(v *view, uids []uint32) (map[uint32]mailstore.Message, error) {
	out := make(map[uint32]mailstore.Message, len(uids))
	if len(uids) <= fewMessages {
		for _, uid := range uids {
			m, err := sess.store.Message(sess.account, v.name, uid)
			if errors.Is(err, mailstore.ErrNoMessage) {
				continue // expunged meanwhile, not yet reported
			}
			if err != nil {
				return nil, err
			}
			out[uid] = m
		}
		return out, nil
	}
	msgs, err := sess.store.Messages(sess.account, v.name)
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		if _, ok := slices.BinarySearch(uids, m.UID); ok {
			out[m.UID] = m
		}
	}
	return out, nil
}

// fewMessages is where reading the whole message list becomes cheaper
// than reading messages one by one (for a remote store, one round trip
// each).
const fewMessages = 16

// copyData is the UIDPLUS answer, nil when nothing was copied.
func copyData(uidValidity uint32, src, dst []uint32) *imap.CopyData {
	if len(src) == 0 {
		return nil
	}
	data := &imap.CopyData{UIDValidity: uidValidity}
	for i := range src {
		data.SourceUIDs.AddNum(imap.UID(src[i]))
		data.DestUIDs.AddNum(imap.UID(dst[i]))
	}
	return data
}
