package imapd

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"clustermail/mailstore"
)

// Fetch answers FETCH and UID FETCH. Reading a body section without .PEEK
// sets \Seen first, and those messages get FLAGS (and MODSEQ) in their
// response, as RFC 9051 asks. Messages expunged by another session but not
// yet reported are left out.
func (sess *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	v, err := sess.selected()
	if err != nil {
		return err
	}
	pos, err := v.resolve(numSet)
	if err != nil || len(pos) == 0 {
		return err
	}
	meta, err := sess.messages(v, v.uidsAt(pos))
	if err != nil {
		return sess.fail("fetch", err, missingIsNonExistent)
	}
	// CHANGEDSINCE (RFC 7162) looks at the state before this command.
	targets := pos[:0]
	for _, p := range pos {
		m, ok := meta[v.uids[p]]
		if ok && (options.ChangedSince == 0 || m.ModSeq > options.ChangedSince) {
			targets = append(targets, p)
		}
	}

	seen := map[uint32]bool{} // messages this command flagged \Seen
	if !v.readOnly && setsSeen(options) {
		var unseen []uint32
		for _, p := range targets {
			if uid := v.uids[p]; !hasFlag(meta[uid].Flags, imap.FlagSeen) {
				unseen = append(unseen, uid)
			}
		}
		if len(unseen) > 0 {
			updated, _, err := sess.store.StoreFlags(sess.account, v.name, unseen, mailstore.FlagsAdd, []string{string(imap.FlagSeen)}, 0)
			if err != nil {
				return sess.fail("fetch", err, missingIsNonExistent)
			}
			for _, m := range updated {
				meta[m.UID] = m
				seen[m.UID] = true
			}
		}
	}

	condStore := sess.condStore()
	for _, p := range targets {
		uid := v.uids[p]
		m := meta[uid]
		var body []byte
		if needsBody(options) {
			body, err = sess.store.Body(sess.account, v.name, uid)
			if errors.Is(err, mailstore.ErrNoMessage) {
				continue
			}
			if err != nil {
				return sess.fail("fetch", err, missingIsNonExistent)
			}
		}
		if err := writeMessage(w.CreateMessage(uint32(p+1)), m, body, options, seen[uid], condStore); err != nil {
			return err
		}
		if options.Flags || seen[uid] {
			v.mods[p] = m.ModSeq // the client has the current flags
		}
	}
	return nil
}

// setsSeen reports whether the FETCH reads a body section without .PEEK.
func setsSeen(options *imap.FetchOptions) bool {
	for _, bs := range options.BodySection {
		if !bs.Peek {
			return true
		}
	}
	for _, bs := range options.BinarySection {
		if !bs.Peek {
			return true
		}
	}
	return false
}

// needsBody reports whether the FETCH needs the message content.
func needsBody(options *imap.FetchOptions) bool {
	return options.Envelope || options.BodyStructure != nil || len(options.BodySection) > 0 ||
		len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
}

// writeMessage writes one FETCH response. flagsChanged adds FLAGS (and
// MODSEQ under CONDSTORE) for a message whose \Seen this command set.
func writeMessage(rw *imapserver.FetchResponseWriter, m mailstore.Message, body []byte, options *imap.FetchOptions, flagsChanged, condStore bool) error {
	if options.UID {
		rw.WriteUID(imap.UID(m.UID))
	}
	if options.Flags || flagsChanged {
		rw.WriteFlags(imapFlags(m.Flags))
	}
	if options.InternalDate {
		rw.WriteInternalDate(m.InternalDate)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(m.Size)
	}
	if options.ModSeq || (flagsChanged && condStore) {
		rw.WriteModSeq(m.ModSeq)
	}
	if options.Envelope {
		rw.WriteEnvelope(envelope(body))
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(bodyStructure(body))
	}
	// The response must be closed whatever happens: it holds the
	// connection's write lock.
	var err error
	for _, bs := range options.BodySection {
		b := imapserver.ExtractBodySection(bytes.NewReader(body), bs)
		if err == nil {
			err = writeLiteral(rw.WriteBodySection(bs, int64(len(b))), b)
		}
	}
	for _, bs := range options.BinarySection {
		b := imapserver.ExtractBinarySection(bytes.NewReader(body), bs)
		if err == nil {
			err = writeLiteral(rw.WriteBinarySection(bs, int64(len(b))), b)
		}
	}
	for _, bss := range options.BinarySectionSize {
		rw.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(bytes.NewReader(body), bss))
	}
	if cerr := rw.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeLiteral writes b to a literal writer and closes it.
func writeLiteral(wc io.WriteCloser, b []byte) error {
	_, err := wc.Write(b)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

// envelope parses the header of body; a broken header yields what could
// be read.
func envelope(body []byte) *imap.Envelope {
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(body)))
	return imapserver.ExtractEnvelope(h)
}

// bodyStructure extracts the MIME structure of body. A multipart without
// parts (no boundary found) gets an empty text/plain one: go-imap cannot
// write an empty multipart, and a stored message must stay fetchable.
func bodyStructure(body []byte) imap.BodyStructure {
	bs := imapserver.ExtractBodyStructure(bytes.NewReader(body))
	fixEmptyMultipart(bs)
	return bs
}

func fixEmptyMultipart(bs imap.BodyStructure) {
	switch bs := bs.(type) {
	case *imap.BodyStructureMultiPart:
		if len(bs.Children) == 0 {
			bs.Children = []imap.BodyStructure{&imap.BodyStructureSinglePart{
				Type: "text", Subtype: "plain", Params: map[string]string{"charset": "us-ascii"},
				Text: &imap.BodyStructureText{}, Extended: &imap.BodyStructureSinglePartExt{},
			}}
		}
		for _, c := range bs.Children {
			fixEmptyMultipart(c)
		}
	case *imap.BodyStructureSinglePart:
		if bs.MessageRFC822 != nil && bs.MessageRFC822.BodyStructure != nil {
			fixEmptyMultipart(bs.MessageRFC822.BodyStructure)
		}
	}
}

// Store answers STORE and UID STORE, with UNCHANGEDSINCE (RFC 7162). The
// FETCH responses carry UID for UID STORE and MODSEQ under CONDSTORE;
// with .SILENT under CONDSTORE they still carry MODSEQ, as RFC 7162
// requires. Messages that failed UNCHANGEDSINCE are reported in a MODIFIED
// response code on the tagged OK.
func (sess *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
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
	var op mailstore.FlagOp
	switch flags.Op {
	case imap.StoreFlagsSet:
		op = mailstore.FlagsSet
	case imap.StoreFlagsAdd:
		op = mailstore.FlagsAdd
	case imap.StoreFlagsDel:
		op = mailstore.FlagsRemove
	}
	var unchangedSince uint64
	if options != nil {
		unchangedSince = options.UnchangedSince
	}
	updated, failed, err := sess.store.StoreFlags(sess.account, v.name, v.uidsAt(pos), op, flagStrings(flags.Flags), unchangedSince)
	if err != nil {
		return sess.fail("store", err, missingIsNonExistent)
	}
	_, byUID := numSet.(imap.UIDSet)
	condStore := sess.condStore()
	for _, m := range updated {
		p := v.indexOf(m.UID)
		if p < 0 {
			continue
		}
		// The client now knows the flags (with .SILENT, those it set), so
		// the next poll does not report this change again. A change of
		// other flags by another session just before a .SILENT STORE goes
		// unreported until the message changes again (RFC 3501 only
		// says SHOULD).
		v.mods[p] = m.ModSeq
		if flags.Silent && !condStore {
			continue
		}
		rw := w.CreateMessage(uint32(p + 1))
		if byUID {
			rw.WriteUID(imap.UID(m.UID))
		}
		if !flags.Silent {
			rw.WriteFlags(imapFlags(m.Flags))
		}
		if condStore {
			rw.WriteModSeq(m.ModSeq)
		}
		if err := rw.Close(); err != nil {
			return err
		}
	}
	if len(failed) == 0 {
		return nil
	}
	var set imap.NumSet
	if byUID {
		var uids imap.UIDSet
		for _, uid := range failed {
			uids.AddNum(imap.UID(uid))
		}
		set = uids
	} else {
		var seqs imap.SeqSet
		for _, uid := range failed {
			if p := v.indexOf(uid); p >= 0 {
				seqs.AddNum(uint32(p + 1))
			}
		}
		set = seqs
	}
	// An OK with a response code is the RFC 7162 answer; go-imap writes an
	// *imap.Error as the tagged response, whatever its type.
	return &imap.Error{Type: imap.StatusResponseTypeOK, Code: imap.ResponseCode("MODIFIED " + set.String()),
		Text: "Conditional STORE failed for some messages"}
}
