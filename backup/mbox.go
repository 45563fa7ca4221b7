package backup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"
)

// The mbox variant written and read here is mboxrd:
//
//   - every message starts with a "From " line holding the envelope sender
//     and the internal date in asctime form, in UTC (mbox has no zone; UTC
//     keeps a file independent of the machine that wrote it);
//   - a line of the message matching ^>*From  gets one more '>', and the
//     reader removes one, so every line survives, however many '>' it had;
//   - every message is followed by one empty line.
//
// Line endings: stored messages use CRLF, mbox files conventionally LF.
// The writer turns CRLF into LF and the reader turns LF back into CRLF, so
// the file is what mail clients expect and a CRLF message round-trips byte
// for byte. A message that would not survive that (a bare LF, or CR CR LF)
// is written as stored and marked, as is one whose last line has no line
// break (the writer must add one before the next "From " line); see
// markerHeader. Messages of other tools' mbox files get CRLF line endings.
//
// Flags go into three headers placed before the message's own, in the
// order mutt and Dovecot use them:
//
//	Status: RO          R: \Seen; O ("old") is always written
//	X-Status: AFTD      A: \Answered, F: \Flagged, T: \Draft, D: \Deleted
//	X-Keywords: a b     every other flag, space-separated
//
// The reader removes exactly that block when a message starts with it, so
// a message that had headers of those names of its own keeps them. In
// messages of other tools, where the headers may be anywhere in the header
// section, the reader takes the flags from them and removes them: they are
// the old mailbox's bookkeeping, now held as IMAP flags.

// Message is one message of an mbox file.
type Message struct {
	// Sender is the envelope sender of the "From " line. The store keeps
	// none, so an export writes the From header's address (see SenderOf);
	// an import reads it and does not use it.
	Sender string
	// Date is the internal date, kept to the second.
	Date time.Time
	// Flags are IMAP flags: system flags such as `\Seen` and keywords.
	Flags []string
	// Data is the message, as stored (CRLF line endings).
	Data []byte
}

// ErrNotMbox means the input does not start like an mbox file.
var ErrNotMbox = errors.New(`not an mbox file: it does not start with a "From " line`)

// markerHeader carries what a reader needs to give back a message byte for
// byte when the plain conversion would not: "raw" (written as stored, no
// line ending conversion) and "no-eol" (the writer added the final line
// break). It is written only for such messages, after the flag headers.
const markerHeader = "X-Clustermail-Mbox"

// asctime is the date layout of the "From " line.
const asctime = "Mon Jan _2 15:04:05 2006"

// fromDateLayouts are the "From " line dates the reader accepts: asctime,
// and asctime with a zone where other tools put one.
var fromDateLayouts = []string{
	"Mon Jan 2 15:04:05 2006",
	"Mon Jan 2 15:04:05 MST 2006",
	"Mon Jan 2 15:04:05 -0700 2006",
	"Mon Jan 2 15:04:05 2006 -0700",
	"Mon Jan 2 15:04 2006",
}

// MboxWriter writes messages in mboxrd format.
type MboxWriter struct {
	w *bufio.Writer
}

// NewMboxWriter returns a writer of mboxrd to w. Call Flush at the end.
func NewMboxWriter(w io.Writer) *MboxWriter {
	return &MboxWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

// Write appends one message.
func (mw *MboxWriter) Write(m Message) error {
	data := m.Data
	var marks []string
	if lfRoundTrips(data) {
		data = toLF(data)
	} else {
		marks = append(marks, "raw")
	}
	noEOL := len(data) > 0 && data[len(data)-1] != '\n'
	if noEOL {
		marks = append(marks, "no-eol")
	}
	// A message whose first header has the marker's name gets a marker of
	// its own (maybe empty) in front, or the reader would take that
	// header for ours.
	marker := len(marks) > 0 || bytes.HasPrefix(data, []byte(markerHeader+":"))
	var b bytes.Buffer
	b.Grow(256) // the From line and our headers; the body goes straight to mw.w
	b.WriteString("From ")
	b.WriteString(fromSender(m.Sender))
	b.WriteByte(' ')
	b.WriteString(m.Date.UTC().Format(asctime))
	b.WriteByte('\n')
	status, xstatus, keywords := flagHeaders(m.Flags)
	writeHeader(&b, "Status", status)
	writeHeader(&b, "X-Status", xstatus)
	writeHeader(&b, "X-Keywords", keywords)
	if marker {
		writeHeader(&b, markerHeader, strings.Join(marks, " "))
	}
	if _, err := mw.w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write mbox: %w", err)
	}
	if err := writeQuoted(mw.w, data); err != nil {
		return fmt.Errorf("write mbox: %w", err)
	}
	if noEOL {
		if err := mw.w.WriteByte('\n'); err != nil {
			return fmt.Errorf("write mbox: %w", err)
		}
	}
	if err := mw.w.WriteByte('\n'); err != nil { // the empty line between messages
		return fmt.Errorf("write mbox: %w", err)
	}
	return nil
}

// Flush writes what is buffered.
func (mw *MboxWriter) Flush() error {
	if err := mw.w.Flush(); err != nil {
		return fmt.Errorf("write mbox: %w", err)
	}
	return nil
}

func writeHeader(b *bytes.Buffer, name, value string) {
	b.WriteString(name)
	b.WriteByte(':')
	if value != "" {
		b.WriteByte(' ')
		b.WriteString(value)
	}
	b.WriteByte('\n')
}

// writeQuoted writes data, adding a '>' to every line that matches
// ^>*From .
func writeQuoted(w *bufio.Writer, data []byte) error {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line = data[:i+1]
		}
		if isFromLine(bytes.TrimLeft(line, ">")) {
			if err := w.WriteByte('>'); err != nil {
				return err
			}
		}
		if _, err := w.Write(line); err != nil {
			return err
		}
		data = data[len(line):]
	}
	return nil
}

func isFromLine(line []byte) bool { return bytes.HasPrefix(line, []byte("From ")) }

// fromSender makes s fit the "From " line: one word, MAILER-DAEMON for none
// (the null sender's conventional name).
func fromSender(s string) string {
	s = strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f {
			return '_'
		}
		return r
	}, strings.Trim(s, "<> \t"))
	if s == "" {
		return "MAILER-DAEMON"
	}
	return s
}

// SenderOf returns the address of a message's From header, or "" when it
// has none that parses: the best stand-in for the envelope sender, which
// the store does not keep.
func SenderOf(data []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return ""
	}
	if a, err := mail.ParseAddress(m.Header.Get("From")); err == nil {
		return a.Address
	}
	return ""
}

// toLF turns every CRLF into LF.
func toLF(b []byte) []byte {
	if !bytes.Contains(b, []byte("\r\n")) {
		return b
	}
	return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
}

// lfRoundTrips reports whether toCRLF(toLF(b)) gives b back, without
// building either: b has no bare LF and no CR doubled before an LF.
func lfRoundTrips(b []byte) bool {
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r' || i > 1 && b[i-2] == '\r') {
			return false
		}
	}
	return true
}

// toCRLF turns every LF that has no CR before it into CRLF.
func toCRLF(b []byte) []byte {
	n := 0
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			n++
		}
	}
	if n == 0 {
		return b
	}
	out := make([]byte, 0, len(b)+n)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// ToCRLF returns b with every bare LF turned into CRLF: how a message from
// a Unix file (Maildir, a single .eml) is stored.
func ToCRLF(b []byte) []byte { return toCRLF(b) }

// MboxReader reads messages of an mbox file one at a time, so a file of
// any size is read in the memory of its largest message.
type MboxReader struct {
	r    *bufio.Reader
	max  int64
	from []byte // the "From " line of the next message, nil at the end
	line int    // number of lines read
	n    int    // messages returned
	err  error  // sticky
}

// NewMboxReader returns a reader of the mbox file r. maxMessage bounds the
// size of one message (0: no bound), so a file that is not mbox, or has
// lost its separators, cannot take all memory.
func NewMboxReader(r io.Reader, maxMessage int64) *MboxReader {
	return &MboxReader{r: bufio.NewReaderSize(r, 64<<10), max: maxMessage}
}

// Next returns the next message, or io.EOF after the last one. A
// malformed file gives an error naming the message and the line.
func (mr *MboxReader) Next() (Message, error) {
	if mr.err != nil {
		return Message{}, mr.err
	}
	m, err := mr.next()
	if err != nil {
		mr.err = err
	}
	return m, err
}

func (mr *MboxReader) next() (Message, error) {
	if mr.line == 0 {
		// The first line that is not empty must be a "From " line.
		for {
			line, err := mr.readLine()
			if len(line) == 0 && err != nil {
				if errors.Is(err, io.EOF) {
					return Message{}, io.EOF // an empty file has no messages
				}
				return Message{}, err
			}
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				continue
			}
			if !isFromLine(line) {
				return Message{}, fmt.Errorf("line %d: %w", mr.line, ErrNotMbox)
			}
			mr.from = line
			break
		}
	}
	if mr.from == nil {
		return Message{}, io.EOF
	}
	mr.n++
	first := mr.line
	sender, date := parseFromLine(mr.from)
	mr.from = nil
	var buf []byte
	for {
		line, err := mr.readLine()
		if len(line) > 0 {
			if isFromLine(line) {
				mr.from = line
				break
			}
			if line[0] == '>' && isFromLine(bytes.TrimLeft(line, ">")) {
				line = line[1:]
			}
			buf = append(buf, line...)
			if mr.max > 0 && int64(len(buf)) > mr.max {
				return Message{}, fmt.Errorf("message %d (line %d): larger than %d bytes", mr.n, first, mr.max)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Message{}, fmt.Errorf("message %d (line %d): %w", mr.n, first, err)
		}
	}
	// Drop the empty line that separates messages.
	switch {
	case bytes.HasSuffix(buf, []byte("\n\n")) || string(buf) == "\n":
		buf = buf[:len(buf)-1]
	case bytes.HasSuffix(buf, []byte("\n\r\n")) || string(buf) == "\r\n":
		buf = buf[:len(buf)-2]
	}
	m := Message{Sender: sender, Date: date}
	var marks string
	m.Flags, marks, buf = takeFlags(buf)
	if strings.Contains(" "+marks+" ", " no-eol ") && len(buf) > 0 && buf[len(buf)-1] == '\n' {
		buf = buf[:len(buf)-1]
	}
	if !strings.Contains(" "+marks+" ", " raw ") {
		buf = toCRLF(buf)
	}
	if buf == nil {
		buf = []byte{}
	}
	m.Data = buf
	if m.Date.IsZero() {
		m.Date = headerDate(m.Data)
	}
	return m, nil
}

// readLine returns the next line with its LF (without one at the end of
// the input, where err is io.EOF).
func (mr *MboxReader) readLine() ([]byte, error) {
	var out []byte
	for {
		chunk, err := mr.r.ReadSlice('\n')
		out = append(out, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			if mr.max > 0 && int64(len(out)) > mr.max {
				return nil, fmt.Errorf("line %d: longer than %d bytes", mr.line+1, mr.max)
			}
			continue
		}
		if len(out) > 0 {
			mr.line++
		}
		return out, err
	}
}

// parseFromLine reads the sender and date of a "From " line. A date that
// does not parse is zero; the caller falls back to the Date header.
func parseFromLine(line []byte) (sender string, date time.Time) {
	fields := strings.Fields(string(line[len("From "):]))
	for _, k := range []int{6, 5} {
		if len(fields) < k {
			continue
		}
		s := strings.Join(fields[len(fields)-k:], " ")
		for _, layout := range fromDateLayouts {
			if t, err := time.Parse(layout, s); err == nil {
				return strings.Join(fields[:len(fields)-k], " "), t
			}
		}
	}
	if len(fields) > 0 {
		sender = fields[0]
	}
	return sender, time.Time{}
}

// headerDate is the message's Date header, or zero (the store then uses
// the time of the import).
func headerDate(data []byte) time.Time {
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return time.Time{}
	}
	t, err := m.Header.Date()
	if err != nil {
		return time.Time{}
	}
	return t
}

// takeFlags reads the flags of a message as found in the file and removes
// the headers that carried them. marks is the value of markerHeader.
func takeFlags(buf []byte) (flags []string, marks string, rest []byte) {
	// Our own block: exactly these headers, in this order, at the top.
	if vals, n, ok := ownBlock(buf); ok {
		return parseFlags(vals[0], vals[1], vals[2]), vals[3], buf[n:]
	}
	// Another tool's file: the headers may be anywhere in the header
	// section, and folded.
	var status, xstatus, keywords []string
	var cur *[]string // the flag header being read, for its continuations
	out := make([]byte, 0, len(buf))
	rest = buf
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 { // end of the header section
			break
		}
		rest = rest[len(line):]
		if line[0] == ' ' || line[0] == '\t' { // a continuation line
			if cur != nil {
				*cur = append(*cur, string(bytes.TrimSpace(line)))
			} else {
				out = append(out, line...)
			}
			continue
		}
		cur = nil
		if name, value, ok := bytes.Cut(line, []byte(":")); ok {
			switch strings.ToLower(string(bytes.TrimSpace(name))) {
			case "status":
				cur = &status
			case "x-status":
				cur = &xstatus
			case "x-keywords":
				cur = &keywords
			}
			if cur != nil {
				*cur = append(*cur, string(bytes.TrimSpace(value)))
				continue
			}
		}
		out = append(out, line...)
	}
	out = append(out, rest...)
	return parseFlags(strings.Join(status, ""), strings.Join(xstatus, ""), strings.Join(keywords, " ")), "", out
}

// ownBlock recognises the flag headers the writer puts at the top of every
// message. vals holds Status, X-Status, X-Keywords and the marker; n is
// the length of the block.
func ownBlock(buf []byte) (vals [4]string, n int, ok bool) {
	names := []string{"Status:", "X-Status:", "X-Keywords:", markerHeader + ":"}
	for i, name := range names {
		rest := buf[n:]
		if !bytes.HasPrefix(rest, []byte(name)) {
			if i == 3 {
				return vals, n, true // the marker is optional
			}
			return vals, 0, false
		}
		end := bytes.IndexByte(rest, '\n')
		if end < 0 {
			return vals, 0, false
		}
		vals[i] = strings.TrimSpace(string(rest[len(name):end]))
		n += end + 1
	}
	return vals, n, true
}

// flagHeaders renders flags as the values of Status, X-Status and
// X-Keywords.
func flagHeaders(flags []string) (status, xstatus, keywords string) {
	has := func(f string) bool {
		for _, g := range flags {
			if strings.EqualFold(g, f) {
				return true
			}
		}
		return false
	}
	if has(`\Seen`) {
		status = "R"
	}
	status += "O"
	for _, l := range statusLetters {
		if has(l.flag) {
			xstatus += string(l.letter)
		}
	}
	var kw []string
	for _, f := range flags {
		if !isLetterFlag(f) && !strings.EqualFold(f, `\Recent`) {
			kw = append(kw, f)
		}
	}
	return status, xstatus, strings.Join(kw, " ")
}

// statusLetters are the X-Status letters, in the order they are written.
var statusLetters = []struct {
	letter byte
	flag   string
}{{'A', `\Answered`}, {'F', `\Flagged`}, {'T', `\Draft`}, {'D', `\Deleted`}}

func isLetterFlag(f string) bool {
	if strings.EqualFold(f, `\Seen`) {
		return true
	}
	for _, l := range statusLetters {
		if strings.EqualFold(f, l.flag) {
			return true
		}
	}
	return false
}

// parseFlags turns the three header values into IMAP flags. Keywords that
// are not valid IMAP atoms are dropped: another tool's file may hold
// anything there.
func parseFlags(status, xstatus, keywords string) []string {
	var out []string
	add := func(f string) {
		for _, g := range out {
			if strings.EqualFold(g, f) {
				return
			}
		}
		out = append(out, f)
	}
	if strings.ContainsRune(status, 'R') {
		add(`\Seen`)
	}
	for _, l := range statusLetters {
		if strings.IndexByte(xstatus, l.letter) >= 0 {
			add(l.flag)
		}
	}
	for _, k := range strings.Fields(keywords) {
		if ValidFlag(k) && !strings.EqualFold(k, `\Recent`) {
			add(k)
		}
	}
	return out
}

// ValidFlag reports whether f is an IMAP flag: an atom, optionally after a
// backslash (RFC 3501's flag-keyword and flag-extension).
func ValidFlag(f string) bool {
	atom := strings.TrimPrefix(f, `\`)
	if atom == "" || len(f) > 256 {
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

// Counter counts the messages of an mbox stream written through it, by its
// "From " lines: in mboxrd every other line starting so is quoted.
type Counter struct {
	Messages int
	Bytes    int64
	lineHead []byte // the start of the current line, up to len("From ")
	midLine  bool   // the current line is longer than lineHead keeps
}

// Write counts p.
func (c *Counter) Write(p []byte) (int, error) {
	c.Bytes += int64(len(p))
	const sep = "From "
	for _, b := range p {
		if b == '\n' {
			c.lineHead, c.midLine = c.lineHead[:0], false
			continue
		}
		if c.midLine {
			continue
		}
		c.lineHead = append(c.lineHead, b)
		if len(c.lineHead) == len(sep) {
			if string(c.lineHead) == sep {
				c.Messages++
			}
			c.midLine = true
		} else if sep[len(c.lineHead)-1] != b {
			c.midLine = true
		}
	}
	return len(p), nil
}
