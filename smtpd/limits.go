package smtpd

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// Limits on what one session may ask, beyond those of go-smtp.
const (
	// maxMessagesPerSession: after this many accepted messages MAIL is
	// answered 421 and the connection closed (the default of Exim's
	// smtp_accept_max_per_connection). A sender then reconnects: what it
	// bounds is how long one connection can hold a slot.
	maxMessagesPerSession = 1000
	// maxCommands bounds the commands a session sends without getting a
	// message accepted (NOOP, RSET, VRFY, EHLO floods); the count starts
	// again at every accepted message, so large legitimate sessions (many
	// messages of 100 recipients each) never meet it. Inside TLS it counts
	// reply lines (see countWrite), hence the room.
	maxCommands = 2000
	// maxHops: more Received fields than this is a mail loop (RFC 5321
	// 6.3 suggests 100).
	maxHops = 100
	// Bounds of the header section of a message.
	maxHeaderFields = 1000
	maxHeaderBytes  = 1 << 20
	// maxMIMEDepth bounds multipart nesting, which every MIME parser
	// after us (IMAP BODYSTRUCTURE, filters) walks recursively.
	maxMIMEDepth = 50
)

var (
	errTooManyHops = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 4, 6},
		Message: "Too many hops, mail loop detected"}
	errHeaderTooBig = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
		Message: "Message header too large"}
	errMIMETooDeep = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "MIME structure nested too deeply"}
	errSendRate = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1},
		Message: "Sending rate limit exceeded, try later"}
	errAuthLocked = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Too many failed attempts, try later"}
	// errTooManyCommands ends a session inside TLS, where the 421 cannot
	// be written under go-smtp: it answers a read error with its own 421.
	errTooManyCommands = errors.New("too many commands")
)

const replyTooManyCommands = "421 4.7.0 Too many commands, closing connection\r\n"

// remoteIP is the client's address without the port.
func remoteIP(c net.Conn) string {
	a := c.RemoteAddr().String()
	if h, _, err := net.SplitHostPort(a); err == nil {
		return h
	}
	return a
}

// refuse answers a connection over a limit with 421 and closes it.
func (l *limitListener) refuse(c net.Conn, text string) {
	l.m.refused.WithLabelValues(l.name).Inc()
	l.refuser.Refuse(c, "421 4.7.0 "+l.hostname+" "+text+"\r\n")
}

// countWrite counts the commands answered, from the replies written:
// in clear text one per final reply line (see Write), inside TLS one per
// record of application data, which go-smtp writes one reply line at a
// time (an EHLO answer counts a dozen: far below the limit).
func (c *countingConn) countWrite(p []byte) (encrypted bool) {
	switch {
	case len(p) == 0:
	case c.tls.Load():
		if p[0] == 0x17 { // application data
			c.commands.Add(1)
		}
	case c.bol && p[0] == 0x16: // a handshake record: replies are now encrypted
		c.tls.Store(true)
	}
	return c.tls.Load()
}

// overLimit is checked before each read from the client: a session that
// has had maxCommands commands answered since its last accepted message
// is told so and closed. It runs between reads, so commands pipelined in
// one read are all answered first.
func (c *countingConn) overLimit() error {
	if c.l.maxCommands <= 0 || c.inData.Load() || c.commands.Load() < int64(c.l.maxCommands) {
		return nil
	}
	if c.tls.Load() {
		return errTooManyCommands
	}
	if c.closing.CompareAndSwap(false, true) {
		_ = c.flush()
		_ = c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Conn.Write([]byte(replyTooManyCommands))
	}
	// go-smtp ends the session quietly at EOF.
	return io.EOF
}

// cleanReply replaces the control characters of a reply line but its
// CRLF: go-smtp echoes some client input (an unknown command's verb, with
// a bare CR or NUL in it) into its replies.
func cleanReply(p []byte) []byte {
	body := p[:len(p)-2]
	if bytes.IndexFunc(body, func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0 {
		return p
	}
	out := make([]byte, 0, len(p))
	for _, b := range body {
		if b < 0x20 || b == 0x7f {
			b = '?'
		}
		out = append(out, b)
	}
	return append(out, '\r', '\n')
}

// checkMail applies the per-session and per-sender limits at MAIL.
func (s *session) checkMail() error {
	if s.sent >= maxMessagesPerSession {
		s.s.log.Info("session closed: too many messages", "remote", s.remote)
		s.closeWith(421, smtp.EnhancedCode{4, 7, 0}, "Too many messages in one session, closing connection")
		return smtpErr(421, smtp.EnhancedCode{4, 7, 0}, "Too many messages in one session")
	}
	if s.account != "" && !s.s.cfg.SendRate.Allow(s.account) {
		s.s.log.Warn("mail refused: sending rate limit", "remote", s.remote, "account", s.account)
		return errSendRate
	}
	return nil
}

// accepted counts a message queued: the per-session and per-sender
// limits, and a fresh allowance of commands.
func (s *session) accepted() {
	s.sent++
	if s.cc != nil {
		s.cc.commands.Store(0)
	}
	if s.account != "" {
		s.s.cfg.SendRate.Add(s.account, 1)
	}
}

// checkHeaders refuses a message whose header section is too large, that
// has looped (too many Received fields) or whose MIME structure is nested
// too deeply. msg ends its lines with CRLF (the strict reader saw to it);
// only the header section is read for the first two checks.
func checkHeaders(msg []byte) error {
	fields, hops := 0, 0
	var ctype []byte // the top-level Content-Type, unfolded
	inCtype := false
	off := 0
	for off < len(msg) {
		line, next := nextLine(msg, off)
		if next > maxHeaderBytes {
			return errHeaderTooBig
		}
		off = next
		if len(line) == 0 {
			break // the end of the header section
		}
		if line[0] == ' ' || line[0] == '\t' {
			if inCtype {
				ctype = append(ctype, line...)
			}
			continue
		}
		fields++
		if fields > maxHeaderFields {
			return errHeaderTooBig
		}
		name, value, _ := bytes.Cut(line, []byte{':'})
		name = bytes.TrimRight(name, " \t")
		inCtype = false
		switch {
		case bytes.EqualFold(name, []byte("Received")):
			hops++
		case bytes.EqualFold(name, []byte("Content-Type")):
			ctype, inCtype = append([]byte(nil), value...), true
		}
	}
	if hops > maxHops {
		return errTooManyHops
	}
	if mimeDepth(msg[off:], ctype) > maxMIMEDepth {
		return errMIMETooDeep
	}
	return nil
}

// nextLine returns the line at off without its line ending, and the
// offset of the line after it.
func nextLine(msg []byte, off int) ([]byte, int) {
	i := bytes.IndexByte(msg[off:], '\n')
	if i < 0 {
		return msg[off:], len(msg)
	}
	return bytes.TrimSuffix(msg[off:off+i], []byte{'\r'}), off + i + 1
}

// mediaType parses a Content-Type value: its lower-case type and, for a
// multipart, its boundary.
func mediaType(ctype []byte) (mt, boundary string) {
	if len(ctype) == 0 {
		return "", ""
	}
	mt, params, err := mime.ParseMediaType(string(ctype))
	if err != nil {
		return "", ""
	}
	if strings.HasPrefix(mt, "multipart/") {
		boundary = params["boundary"]
	}
	return mt, boundary
}

// encapsulated reports whether a part of this type is a whole message,
// whose own header follows the part's (RFC 2046 5.2.1, RFC 6532).
func encapsulated(mt string) bool { return mt == "message/rfc822" || mt == "message/global" }

// contentType reads the header block at off, up to its empty line, and
// returns its Content-Type value, unfolded, and the offset after it.
func contentType(body []byte, off int) ([]byte, int) {
	var ctype []byte
	inCtype := false
	for off < len(body) {
		line, next := nextLine(body, off)
		off = next
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if inCtype {
				ctype = append(ctype, line...)
			}
			continue
		}
		name, value, _ := bytes.Cut(line, []byte{':'})
		inCtype = bytes.EqualFold(bytes.TrimRight(name, " \t"), []byte("Content-Type"))
		if inCtype {
			ctype = append(ctype[:0], value...)
		}
	}
	return ctype, off
}

// mimeDepth is how deeply the entities of body, the body of an entity of
// Content-Type ctype, nest, stopping as soon as the depth passes
// maxMIMEDepth. Every multipart and every encapsulated message is a
// level. It follows boundary lines in one pass, with no recursion: at
// each delimiter of an open multipart the deeper levels end and a part
// header follows, which may open another level. An encapsulated
// message's own header follows its part header directly.
func mimeDepth(body []byte, ctype []byte) int {
	var open []string // the boundary of each level; "" for a message
	depth, off := 0, 0
	// enter opens the levels an entity of ctype starts, whose header ended
	// at off, and reads the headers of encapsulated messages.
	enter := func(ctype []byte) {
		for len(open) <= maxMIMEDepth {
			mt, b := mediaType(ctype)
			switch {
			case b != "":
				open = append(open, b)
			case encapsulated(mt):
				open = append(open, "")
				ctype, off = contentType(body, off)
			}
			depth = max(depth, len(open))
			if b != "" || !encapsulated(mt) {
				return
			}
		}
	}
	enter(ctype)
	// Once no multipart is open, nothing that follows can open one.
	for off < len(body) && depth <= maxMIMEDepth && slices.ContainsFunc(open, func(b string) bool { return b != "" }) {
		line, next := nextLine(body, off)
		off = next
		if !bytes.HasPrefix(line, []byte("--")) {
			continue
		}
		line = bytes.TrimRight(line[2:], " \t")
		level, closing := -1, false
		for i := len(open) - 1; i >= 0; i-- {
			if open[i] == "" {
				continue
			}
			rest, ok := bytes.CutPrefix(line, []byte(open[i]))
			if ok && (len(rest) == 0 || string(rest) == "--") {
				level, closing = i, len(rest) > 0
				break
			}
		}
		if level < 0 {
			continue
		}
		if closing {
			open = open[:level]
			continue
		}
		open = open[:level+1]
		var part []byte
		part, off = contentType(body, off)
		enter(part)
	}
	return depth
}
