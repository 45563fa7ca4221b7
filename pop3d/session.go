package pop3d

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"clustermail/mailstore"
)

// state is the RFC 1939 session state. UPDATE is not a state here: it is
// what QUIT does in the TRANSACTION state before closing.
type state int

const (
	stateAuthorization state = iota
	stateTransaction
)

// Per-session limits on misbehaviour, after which the connection closes.
const (
	maxBadCommands  = 10 // unknown, malformed or out-of-state commands
	maxLongLines    = 3  // lines over the limit
	maxAuthFailures = 3  // wrong passwords; the throttle slows the rest
)

// Replies used in more than one place.
const (
	replyTLSRequired = "-ERR [AUTH] TLS required"
	replyUnavailable = "-ERR [SYS/TEMP] mailbox unavailable, try again later"
	replyShutdown    = "-ERR [SYS/TEMP] server shutting down"
	flagDeleted      = `\Deleted`
	flagSeen         = `\Seen`
)

// message is one entry of the maildrop snapshot; its message number is its
// index plus one.
type message struct {
	uid       uint32
	size      int64
	deleted   bool // DELE'd in this session; expunged at QUIT
	retrieved bool // RETR'd; flagged \Seen at QUIT
}

// session is one client connection.
type session struct {
	s    *Server
	raw  net.Conn // the TCP connection: deadlines, shutdown
	conn net.Conn // raw, or the TLS connection over it
	r    *bufio.Reader
	w    *bufio.Writer
	ip   string
	log  *slog.Logger
	tls  bool

	state    state
	user     string // from USER, waiting for PASS
	account  string
	store    Store
	validity uint32
	msgs     []message

	badCommands  int
	longLines    int
	authFailures int
}

func newSession(s *Server, c net.Conn) *session {
	ip, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		ip = c.RemoteAddr().String()
	}
	return &session{s: s, raw: c, ip: ip, log: s.log.With("remote", ip)}
}

// setConn (re)starts reading and writing on c: after STLS nothing read in
// clear text may be taken as sent inside TLS.
func (ss *session) setConn(c net.Conn) {
	ss.conn = c
	// The buffer bounds a line: AUTH lines may use all of it, other
	// commands only MaxLineLength.
	ss.r = bufio.NewReaderSize(c, max(ss.s.cfg.MaxLineLength, authLineLength))
	ss.w = bufio.NewWriterSize(c, 16<<10)
}

func (ss *session) run() {
	defer ss.raw.Close()
	ss.log.Debug("session started")
	if ss.s.cfg.ImplicitTLS {
		if !ss.startTLS() {
			return
		}
	} else {
		ss.setConn(ss.raw)
	}
	defer func() {
		ss.linger()
		ss.log.Debug("session ended", "account", ss.account)
	}()
	ss.reply("+OK %s POP3 server ready", ss.s.cfg.Hostname)
	for {
		cmd, ok := ss.next()
		if !ok || !ss.dispatch(cmd) {
			return
		}
	}
}

// handshakeTimeout caps the TLS handshake, whatever the idle timeout.
const handshakeTimeout = time.Minute

// Bounds of the lingering close.
const (
	lingerTime  = time.Second
	lingerBytes = 64 << 10
)

// linger sends the last reply and half-closes before closing. Closing a
// socket with unread input (the rest of an overlong line, pipelined
// commands) makes the kernel send a reset, which can destroy the final
// "-ERR" before the client reads it; reading the input out for a moment
// lets the client hear why it is being disconnected.
func (ss *session) linger() {
	_ = ss.raw.SetWriteDeadline(time.Now().Add(ss.s.cfg.Timeout))
	if err := ss.w.Flush(); err != nil {
		return
	}
	if tc, ok := ss.conn.(*tls.Conn); ok {
		_ = tc.CloseWrite() // close_notify
	}
	tcp, ok := ss.raw.(*net.TCPConn)
	if !ok || tcp.CloseWrite() != nil {
		return
	}
	_ = ss.raw.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.CopyN(io.Discard, ss.raw, lingerBytes)
}

// reply queues one response line; readLine sends queued replies before
// it waits for input, so pipelined commands get their replies in one write.
func (ss *session) reply(format string, args ...any) {
	_ = ss.raw.SetWriteDeadline(time.Now().Add(ss.s.cfg.Timeout))
	fmt.Fprintf(ss.w, format, args...)
	ss.w.WriteString("\r\n")
}

// bad answers a command that should not have been sent, and reports
// whether the session may go on.
func (ss *session) bad(msg string) bool {
	ss.badCommands++
	ss.reply("-ERR %s", msg)
	if ss.badCommands >= maxBadCommands {
		ss.reply("-ERR too many bad commands, closing connection")
		return false
	}
	return true
}

// errAnswered is what readLine returns for a line it refused and has
// answered; other errors end the session.
var errAnswered = errors.New("line refused")

// errEnd ends the session; any reply has been queued.
var errEnd = errors.New("session ends")

// readLine waits up to the timeout for a line. A line over the limit is
// answered and reported as errAnswered; a timeout, shutdown or closed
// connection as errEnd, after a reply if the client can still hear.
func (ss *session) readLine() ([]byte, error) {
	// Replies wait while whole pipelined commands do; but never while the
	// client may be waiting for them before it sends more.
	if buf, _ := ss.r.Peek(ss.r.Buffered()); bytes.IndexByte(buf, '\n') < 0 {
		if err := ss.w.Flush(); err != nil {
			return nil, errEnd
		}
	}
	// Set before checking closing: see Shutdown.
	_ = ss.raw.SetReadDeadline(time.Now().Add(ss.s.cfg.Timeout))
	if ss.s.closing.Load() {
		ss.reply(replyShutdown)
		return nil, errEnd
	}
	line, err := readLine(ss.r, ss.r.Size())
	var ne net.Error
	switch {
	case err == nil:
		return line, nil
	case errors.Is(err, errLineTooLong):
		if !ss.tooLong() {
			return nil, errEnd
		}
		return nil, errAnswered
	case errors.Is(err, errLineFlood):
		ss.reply("-ERR %v", errLineFlood)
	case errors.As(err, &ne) && ne.Timeout():
		if ss.s.closing.Load() {
			ss.reply(replyShutdown)
		} else {
			ss.log.Debug("idle timeout")
			ss.reply("-ERR disconnected for inactivity")
		}
	case !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed):
		ss.log.Debug("read failed", "err", err)
	}
	return nil, errEnd
}

// tooLong answers a line over the limit and reports whether the session
// may go on.
func (ss *session) tooLong() bool {
	ss.longLines++
	if ss.longLines >= maxLongLines {
		ss.reply("-ERR line too long, closing connection")
		return false
	}
	ss.reply("-ERR line too long")
	return true
}

// next reads commands until one parses; bad lines are answered here.
func (ss *session) next() (command, bool) {
	for {
		line, err := ss.readLine()
		if errors.Is(err, errAnswered) {
			continue
		}
		if err != nil {
			return command{}, false
		}
		isAuth := len(line) >= 4 && bytes.EqualFold(line[:4], []byte("AUTH")) && (len(line) == 4 || line[4] == ' ')
		if len(line)+2 > ss.s.cfg.MaxLineLength && !isAuth {
			if !ss.tooLong() {
				return command{}, false
			}
			continue
		}
		cmd, err := parseCommand(line)
		if err != nil {
			if !ss.bad(err.Error()) {
				return command{}, false
			}
			continue
		}
		return cmd, true
	}
}

// dispatch runs one command and reports whether the session goes on.
func (ss *session) dispatch(cmd command) bool {
	switch cmd.name {
	case "CAPA":
		return ss.capa(cmd)
	case "QUIT":
		return ss.quit(cmd)
	case "USER", "PASS", "AUTH", "STLS":
		if ss.state != stateAuthorization {
			return ss.bad("command not valid after login")
		}
	case "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP":
		if ss.state != stateTransaction {
			return ss.bad("command not valid before login")
		}
	default:
		return ss.bad("unknown command")
	}
	switch cmd.name {
	case "USER":
		return ss.userCmd(cmd)
	case "PASS":
		return ss.pass(cmd)
	case "AUTH":
		return ss.auth(cmd)
	case "STLS":
		return ss.stls(cmd)
	case "STAT":
		return ss.stat(cmd)
	case "LIST":
		return ss.list(cmd, func(i int) string { return fmt.Sprint(ss.msgs[i].size) })
	case "UIDL":
		return ss.list(cmd, func(i int) string { return fmt.Sprintf("%d.%d", ss.validity, ss.msgs[i].uid) })
	case "RETR":
		return ss.retr(cmd)
	case "TOP":
		return ss.top(cmd)
	case "DELE":
		return ss.dele(cmd)
	case "RSET":
		return ss.rset(cmd)
	default: // NOOP
		if len(cmd.args) != 0 {
			return ss.bad("syntax error: NOOP takes no argument")
		}
		ss.reply("+OK")
		return true
	}
}

// passwordsAllowed says whether a password may be sent on this connection.
func (ss *session) passwordsAllowed() bool { return ss.tls || ss.s.cfg.InsecureAuth }

func (ss *session) capa(cmd command) bool {
	if len(cmd.args) != 0 {
		return ss.bad("syntax error: CAPA takes no argument")
	}
	ss.reply("+OK capability list follows")
	for _, c := range []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"} {
		ss.reply("%s", c)
	}
	if ss.state == stateAuthorization {
		// RFC 2595: do not advertise what a client must not use yet.
		if ss.passwordsAllowed() {
			ss.reply("USER")
			ss.reply("SASL PLAIN")
		}
		if ss.s.cfg.TLS != nil && !ss.tls {
			ss.reply("STLS")
		}
	}
	ss.reply("IMPLEMENTATION clustermail")
	ss.reply(".")
	return true
}

func (ss *session) userCmd(cmd command) bool {
	if len(cmd.args) != 1 {
		return ss.bad("syntax error: USER takes one argument")
	}
	if !ss.passwordsAllowed() {
		ss.reply(replyTLSRequired)
		return true
	}
	// Always +OK: anything else would tell who has an account.
	ss.user = cmd.args[0]
	ss.reply("+OK send PASS")
	return true
}

func (ss *session) pass(cmd command) bool {
	if len(cmd.args) != 1 {
		return ss.bad("syntax error: PASS takes one argument")
	}
	if !ss.passwordsAllowed() {
		ss.reply(replyTLSRequired)
		return true
	}
	if ss.user == "" {
		return ss.bad("send USER first")
	}
	user := ss.user
	ss.user = "" // RFC 1939: after a failed PASS the client starts over
	return ss.login(user, cmd.args[0])
}

// auth is RFC 5034 AUTH with the PLAIN mechanism (RFC 4616). A bare AUTH
// lists the mechanisms, as clients from before CAPA expect.
func (ss *session) auth(cmd command) bool {
	if len(cmd.args) == 0 {
		ss.reply("+OK supported mechanisms follow")
		if ss.passwordsAllowed() { // as CAPA says
			ss.reply("PLAIN")
		}
		ss.reply(".")
		return true
	}
	if len(cmd.args) > 2 {
		return ss.bad("syntax error: AUTH takes a mechanism and an optional initial response")
	}
	if !ss.passwordsAllowed() {
		ss.reply(replyTLSRequired)
		return true
	}
	if !strings.EqualFold(cmd.args[0], "PLAIN") {
		ss.reply("-ERR unsupported authentication mechanism")
		return true
	}
	var resp string
	if len(cmd.args) == 2 {
		resp = cmd.args[1]
	} else {
		ss.reply("+ ")
		line, err := ss.readLine()
		if errors.Is(err, errAnswered) {
			return true // the exchange is over: the client has its -ERR
		}
		if err != nil {
			return false
		}
		resp = string(line)
	}
	switch resp {
	case "*":
		ss.reply("-ERR authentication cancelled")
		return true
	case "=": // RFC 5034: an empty initial response
		resp = ""
	}
	dec, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		ss.reply("-ERR invalid base64 in AUTH response")
		return true
	}
	authz, rest, ok1 := bytes.Cut(dec, []byte{0})
	user, pass, ok2 := bytes.Cut(rest, []byte{0})
	if !ok1 || !ok2 || len(user) == 0 {
		ss.reply("-ERR malformed PLAIN response")
		return true
	}
	if len(authz) > 0 && !bytes.Equal(authz, user) {
		// Acting for another account (proxy authorisation) is not offered.
		ss.reply("-ERR [AUTH] authorization identity must be empty or the user name")
		return true
	}
	return ss.login(string(user), string(pass))
}

// login checks a password, slowed by the throttle, then takes the
// maildrop snapshot. It reports whether the session goes on.
func (ss *session) login(user, pass string) bool {
	keyIP, keyUser := "ip:"+ss.ip, "user:"+strings.ToLower(user)
	if ss.s.limiter.Locked(keyIP, keyUser) {
		ss.log.Warn("login refused: locked out", "user", user)
		ss.reply("-ERR [AUTH] too many failed attempts, try later")
		ss.authFailures++
		return ss.authFailures < maxAuthFailures
	}
	if d := ss.s.limiter.Delay(keyIP, keyUser); d > 0 {
		if err := ss.w.Flush(); err != nil {
			return false
		}
		if !ss.s.wait(d) {
			ss.reply(replyShutdown)
			return false
		}
	}
	account, ok := ss.s.backend.Authenticate(user, pass)
	if !ok {
		ss.s.limiter.Fail(keyIP, keyUser)
		ss.s.m.authFailures.Inc()
		ss.authFailures++
		ss.log.Warn("authentication failed", "user", user)
		ss.reply("-ERR [AUTH] invalid user name or password")
		return ss.authFailures < maxAuthFailures
	}
	// Only the account's count is forgiven: one valid login must not
	// reset a client that guesses at other accounts.
	ss.s.limiter.Succeed(keyUser)
	store, err := ss.s.backend.Open(account)
	if err == nil {
		err = ss.snapshot(store, account)
	}
	if err != nil {
		ss.log.Warn("mailbox unavailable at login", "account", account, "err", err)
		ss.reply(replyUnavailable)
		return true
	}
	ss.state = stateTransaction
	n, size := ss.count()
	ss.log.Info("logged in", "account", account, "messages", n, "tls", ss.tls)
	ss.reply("+OK maildrop has %d messages (%d octets)", n, size)
	return true
}

// snapshot reads the INBOX listing the session will serve.
func (ss *session) snapshot(st Store, account string) error {
	info, err := st.Mailbox(account, mailstore.Inbox)
	if errors.Is(err, mailstore.ErrNoMailbox) {
		// The account exists (it authenticated) but has no mailboxes on
		// its store yet: it has never received mail.
		ss.store, ss.account, ss.msgs = st, account, nil
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the INBOX of %s: %w", account, err)
	}
	list, err := st.Messages(account, mailstore.Inbox)
	if err != nil {
		return fmt.Errorf("listing the INBOX of %s: %w", account, err)
	}
	msgs := make([]message, 0, len(list))
	for _, m := range list {
		if !hasFlag(m.Flags, flagDeleted) {
			msgs = append(msgs, message{uid: m.UID, size: m.Size})
		}
	}
	ss.store, ss.account, ss.validity, ss.msgs = st, account, info.UIDValidity, msgs
	return nil
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// count is the number and total size of the messages not DELE'd.
func (ss *session) count() (n int, size int64) {
	for _, m := range ss.msgs {
		if !m.deleted {
			n++
			size += m.size
		}
	}
	return n, size
}

// message resolves a message-number argument to an index, answering -ERR
// when there is no such (undeleted) message.
func (ss *session) message(arg string) (int, bool) {
	n, ok := parseNumber(arg)
	switch {
	case !ok:
		ss.reply("-ERR invalid message number")
	case n < 1 || n > len(ss.msgs):
		ss.reply("-ERR no such message")
	case ss.msgs[n-1].deleted:
		ss.reply("-ERR message %d already deleted", n)
	default:
		return n - 1, true
	}
	return 0, false
}

func (ss *session) stat(cmd command) bool {
	if len(cmd.args) != 0 {
		return ss.bad("syntax error: STAT takes no argument")
	}
	n, size := ss.count()
	ss.reply("+OK %d %d", n, size)
	return true
}

// list serves LIST and UIDL, which differ only in what follows the
// message number.
func (ss *session) list(cmd command, info func(i int) string) bool {
	switch len(cmd.args) {
	case 0:
		n, size := ss.count()
		ss.reply("+OK %d messages (%d octets)", n, size)
		for i, m := range ss.msgs {
			if !m.deleted {
				ss.reply("%d %s", i+1, info(i))
			}
		}
		ss.reply(".")
	case 1:
		if i, ok := ss.message(cmd.args[0]); ok {
			ss.reply("+OK %d %s", i+1, info(i))
		}
	default:
		return ss.bad("syntax error: " + cmd.name + " takes at most one argument")
	}
	return true
}

// body fetches message i, answering -ERR if it cannot.
func (ss *session) body(i int) ([]byte, bool) {
	b, err := ss.store.Body(ss.account, mailstore.Inbox, ss.msgs[i].uid)
	switch {
	case errors.Is(err, mailstore.ErrNoMessage) || errors.Is(err, mailstore.ErrNoMailbox):
		// Expunged by another session since login: there is no lock.
		ss.reply("-ERR message %d was deleted by another session", i+1)
		return nil, false
	case err != nil:
		ss.log.Warn("reading message failed", "account", ss.account, "uid", ss.msgs[i].uid, "err", err)
		ss.reply("-ERR [SYS/TEMP] message unavailable, try again later")
		return nil, false
	}
	return b, true
}

func (ss *session) retr(cmd command) bool {
	if len(cmd.args) != 1 {
		return ss.bad("syntax error: RETR takes one argument")
	}
	i, ok := ss.message(cmd.args[0])
	if !ok {
		return true
	}
	b, ok := ss.body(i)
	if !ok {
		return true
	}
	ss.msgs[i].retrieved = true
	ss.reply("+OK %d octets", len(b))
	writeStuffed(ss.w, b)
	return true
}

func (ss *session) top(cmd command) bool {
	if len(cmd.args) != 2 {
		return ss.bad("syntax error: TOP takes a message number and a line count")
	}
	i, ok := ss.message(cmd.args[0])
	if !ok {
		return true
	}
	lines, ok := parseNumber(cmd.args[1])
	if !ok {
		ss.reply("-ERR invalid line count")
		return true
	}
	b, ok := ss.body(i)
	if !ok {
		return true
	}
	ss.reply("+OK top of message follows")
	writeStuffed(ss.w, top(b, lines))
	return true
}

func (ss *session) dele(cmd command) bool {
	if len(cmd.args) != 1 {
		return ss.bad("syntax error: DELE takes one argument")
	}
	if i, ok := ss.message(cmd.args[0]); ok {
		ss.msgs[i].deleted = true
		ss.reply("+OK message %d deleted", i+1)
	}
	return true
}

func (ss *session) rset(cmd command) bool {
	if len(cmd.args) != 0 {
		return ss.bad("syntax error: RSET takes no argument")
	}
	for i := range ss.msgs {
		ss.msgs[i].deleted = false
	}
	n, size := ss.count()
	ss.reply("+OK maildrop has %d messages (%d octets)", n, size)
	return true
}

func (ss *session) stls(cmd command) bool {
	if len(cmd.args) != 0 {
		return ss.bad("syntax error: STLS takes no argument")
	}
	if ss.tls || ss.s.cfg.TLS == nil {
		ss.reply("-ERR STLS not available")
		return true
	}
	if ss.r.Buffered() > 0 {
		// Commands pipelined behind STLS were sent in clear text and
		// could have been injected (CVE-2011-0411): do not act on them.
		ss.reply("-ERR commands sent after STLS, closing connection")
		return false
	}
	ss.reply("+OK begin TLS negotiation")
	if err := ss.w.Flush(); err != nil {
		return false
	}
	ss.user = ""
	return ss.startTLS()
}

// startTLS runs the server side of the TLS handshake on the connection.
func (ss *session) startTLS() bool {
	tc := tls.Server(ss.raw, ss.s.cfg.TLS)
	// A handshake is machine work: a client idling in it is only holding
	// a connection slot.
	_ = ss.raw.SetDeadline(time.Now().Add(min(ss.s.cfg.Timeout, handshakeTimeout)))
	if ss.s.closing.Load() {
		return false
	}
	if err := tc.Handshake(); err != nil {
		ss.log.Debug("TLS handshake failed", "err", err)
		return false
	}
	ss.tls = true
	ss.setConn(tc)
	return true
}

// quit ends the session; in the TRANSACTION state it first applies the
// deletions (RFC 1939's UPDATE state).
func (ss *session) quit(cmd command) bool {
	if len(cmd.args) != 0 {
		return ss.bad("syntax error: QUIT takes no argument")
	}
	if ss.state != stateTransaction {
		ss.reply("+OK %s POP3 server signing off", ss.s.cfg.Hostname)
		return false
	}
	var dele, seen []uint32
	for _, m := range ss.msgs {
		switch {
		case m.deleted:
			dele = append(dele, m.uid)
		case m.retrieved:
			seen = append(seen, m.uid)
		}
	}
	if len(seen) > 0 {
		// Only a courtesy to IMAP clients: failing it loses nothing.
		if _, _, err := ss.store.StoreFlags(ss.account, mailstore.Inbox, seen, mailstore.FlagsAdd, []string{flagSeen}, 0); err != nil {
			ss.log.Warn("flagging retrieved messages seen failed", "account", ss.account, "err", err)
		}
	}
	if len(dele) > 0 {
		// Flag first: Expunge with UIDs removes only flagged messages, as
		// IMAP UID EXPUNGE does.
		_, _, err := ss.store.StoreFlags(ss.account, mailstore.Inbox, dele, mailstore.FlagsAdd, []string{flagDeleted}, 0)
		if err == nil {
			_, err = ss.store.Expunge(ss.account, mailstore.Inbox, dele)
		}
		if err != nil {
			ss.log.Error("deleting messages at QUIT failed", "account", ss.account, "messages", len(dele), "err", err)
			ss.reply("-ERR [SYS/TEMP] some messages were not deleted")
			return false
		}
		ss.log.Info("messages deleted", "account", ss.account, "messages", len(dele))
	}
	ss.reply("+OK %s POP3 server signing off (%d messages deleted)", ss.s.cfg.Hostname, len(dele))
	return false
}

// writeStuffed writes body as the data of a multi-line response: a line
// beginning with "." gets another in front (RFC 1939 byte-stuffing), an
// unterminated last line gets its CRLF, and ".\r\n" ends it.
func writeStuffed(w *bufio.Writer, body []byte) {
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line = body[:i+1]
		}
		if line[0] == '.' {
			w.WriteByte('.')
		}
		w.Write(line)
		if line[len(line)-1] != '\n' {
			w.WriteString("\r\n")
		}
		body = body[len(line):]
	}
	w.WriteString(".\r\n")
}

// top returns the header of msg, the blank line that ends it, and the
// first n lines of the body. A message without a blank line is all header.
func top(msg []byte, n int) []byte {
	inHeader := true
	for off := 0; off < len(msg); {
		end := len(msg)
		if i := bytes.IndexByte(msg[off:], '\n'); i >= 0 {
			end = off + i + 1
		}
		if inHeader {
			if line := msg[off:end]; string(line) == "\r\n" || string(line) == "\n" {
				inHeader = false
			}
		} else {
			if n == 0 {
				return msg[:off]
			}
			n--
		}
		off = end
	}
	return msg
}
