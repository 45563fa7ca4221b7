package imapd

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"clustermail/mailstore"
)

// Search answers SEARCH and UID SEARCH (with ESEARCH return options and
// SEARCHRES, which go-imap parses) over the messages of the view. Header,
// body and text keys read each candidate message once, decoding MIME
// encodings; comparisons are case-insensitive substring matches.
func (sess *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	v, err := sess.selected()
	if err != nil {
		return nil, err
	}
	msgs, err := sess.store.Messages(sess.account, v.name)
	if err != nil {
		return nil, sess.fail("search", err, missingIsNonExistent)
	}
	cur := make(map[uint32]*mailstore.Message, len(msgs))
	for i := range msgs {
		cur[msgs[i].UID] = &msgs[i]
	}

	var (
		data    imap.SearchData
		seqs    imap.SeqSet
		uids    imap.UIDSet
		matched []uint32
	)
	withModSeq := usesModSeq(criteria)
	for i, uid := range v.uids {
		m := cur[uid]
		if m == nil {
			continue // expunged, not yet reported
		}
		c := &candidate{seq: uint32(i + 1), m: m, v: v, load: func() ([]byte, error) {
			return sess.store.Body(sess.account, v.name, uid)
		}}
		ok, err := c.match(criteria)
		if err != nil {
			return nil, sess.fail("search", err, missingIsNonExistent)
		}
		if !ok {
			continue
		}
		matched = append(matched, uid)
		num := uint32(i + 1)
		if kind == imapserver.NumKindUID {
			num = uid
			uids.AddNum(imap.UID(uid))
		} else {
			seqs.AddNum(num)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
		if withModSeq {
			data.ModSeq = max(data.ModSeq, m.ModSeq)
		}
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	if options.ReturnSave {
		v.searchRes = matched
	}
	return &data, nil
}

// usesModSeq reports whether criteria contain a MODSEQ key, whose SEARCH
// response carries the highest MODSEQ found (RFC 7162).
func usesModSeq(c *imap.SearchCriteria) bool {
	if c.ModSeq != nil {
		return true
	}
	for i := range c.Not {
		if usesModSeq(&c.Not[i]) {
			return true
		}
	}
	for _, or := range c.Or {
		if usesModSeq(&or[0]) || usesModSeq(&or[1]) {
			return true
		}
	}
	return false
}

// candidate is one message being matched; its content is read at most
// once, and only if a key needs it.
type candidate struct {
	seq  uint32
	m    *mailstore.Message
	v    *view
	load func() ([]byte, error)

	loaded bool
	header gomessage.Header
	raw    []byte
	text   string // decoded text parts, lowercased
}

func (c *candidate) content() error {
	if c.loaded {
		return nil
	}
	raw, err := c.load()
	if err != nil {
		return err
	}
	c.loaded, c.raw = true, raw
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	c.header = gomessage.Header{Header: h}
	var sb strings.Builder
	if e, err := gomessage.Read(bytes.NewReader(raw)); e != nil {
		collectText(&sb, e, 0)
	} else {
		_ = err // unparseable: no body text to match
	}
	c.text = strings.ToLower(sb.String())
	return nil
}

// maxMIMEDepth bounds the recursion into nested multiparts.
const maxMIMEDepth = 50

// collectText appends the decoded text of e's leaf parts that are text/*
// or message/* (others are attachments; RFC 9051 leaves their search to
// the server).
func collectText(sb *strings.Builder, e *gomessage.Entity, depth int) {
	if depth > maxMIMEDepth {
		return
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if part == nil || err != nil && !gomessage.IsUnknownCharset(err) && !gomessage.IsUnknownEncoding(err) {
				return
			}
			collectText(sb, part, depth+1)
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return
	}
	b, _ := io.ReadAll(e.Body)
	sb.Write(b)
	sb.WriteByte('\n')
}

// match evaluates criteria (their conjunction) against the message.
func (c *candidate) match(cr *imap.SearchCriteria) (bool, error) {
	n := uint32(len(c.v.uids))
	for _, set := range cr.SeqNum {
		if !inSet(set, c.seq, n) {
			return false, nil
		}
	}
	for _, set := range cr.UID {
		if imap.IsSearchRes(set) {
			set = imap.UIDSet{}
			for _, uid := range c.v.searchRes {
				set.AddNum(imap.UID(uid))
			}
		}
		var last uint32
		if n > 0 {
			last = c.v.uids[n-1]
		}
		if !inSet(imap.SeqSet(uidRanges(set)), c.m.UID, last) {
			return false, nil
		}
	}
	if !matchDate(c.m.InternalDate.UTC(), cr.Since, cr.Before) {
		return false, nil
	}
	for _, f := range cr.Flag {
		if !hasFlag(c.m.Flags, f) {
			return false, nil // \Recent is never set
		}
	}
	for _, f := range cr.NotFlag {
		if hasFlag(c.m.Flags, f) {
			return false, nil
		}
	}
	if cr.Larger != 0 && c.m.Size <= cr.Larger {
		return false, nil
	}
	if cr.Smaller != 0 && c.m.Size >= cr.Smaller {
		return false, nil
	}
	if cr.ModSeq != nil && c.m.ModSeq < cr.ModSeq.ModSeq {
		// Per-flag mod-sequences are not kept: the message's one stands
		// for every entry, as RFC 7162 section 3.4 allows.
		return false, nil
	}

	if len(cr.Header) > 0 || len(cr.Body) > 0 || len(cr.Text) > 0 || !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() {
		if err := c.content(); err != nil {
			return false, err
		}
		for _, hf := range cr.Header {
			if !matchHeader(c.header.FieldsByKey(hf.Key), hf.Value, false) {
				return false, nil
			}
		}
		if !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() {
			date, err := (&mail.Header{Header: c.header}).Date()
			if err != nil || !matchDate(date, cr.SentSince, cr.SentBefore) {
				return false, nil
			}
		}
		for _, s := range cr.Body {
			if !strings.Contains(c.text, strings.ToLower(s)) {
				return false, nil
			}
		}
		for _, s := range cr.Text {
			s = strings.ToLower(s)
			if !strings.Contains(c.text, s) && !matchHeader(c.header.Fields(), s, true) {
				return false, nil
			}
		}
	}

	for i := range cr.Not {
		ok, err := c.match(&cr.Not[i])
		if err != nil || ok {
			return false, err
		}
	}
	for i := range cr.Or {
		ok, err := c.match(&cr.Or[i][0])
		if err == nil && !ok {
			ok, err = c.match(&cr.Or[i][1])
		}
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// matchHeader reports whether a field contains pattern (decoded,
// case-insensitively); an empty pattern asks only that a field exist.
// withName also matches against "Name: value", as TEXT searches the
// header lines.
func matchHeader(fields gomessage.HeaderFields, pattern string, withName bool) bool {
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		if pattern == "" {
			return true
		}
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		if strings.Contains(strings.ToLower(v), pattern) || withName && strings.Contains(strings.ToLower(fields.Key()+": "+v), pattern) {
			return true
		}
	}
	return false
}

// matchDate compares the dates (not times) of t and the bounds: RFC 9051
// has SINCE and BEFORE disregard time and time zone.
func matchDate(t, since, before time.Time) bool {
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && d.Before(since) {
		return false
	}
	if !before.IsZero() && !d.Before(before) {
		return false
	}
	return true
}

// uidRanges converts a UID set to sequence ranges, for inSet.
func uidRanges(set imap.UIDSet) []imap.SeqRange {
	out := make([]imap.SeqRange, len(set))
	for i, r := range set {
		out[i] = imap.SeqRange{Start: uint32(r.Start), Stop: uint32(r.Stop)}
	}
	return out
}

// inSet reports whether n is in set, "*" standing for last.
func inSet(set imap.SeqSet, n, last uint32) bool {
	for _, r := range set {
		start, stop := r.Start, r.Stop
		if start == 0 {
			start = last
		}
		if stop == 0 {
			stop = last
		}
		if start > stop {
			start, stop = stop, start
		}
		if start <= n && n <= stop && n != 0 {
			return true
		}
	}
	return false
}
