package pop3d

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"unicode/utf8"
)

// command is one parsed client command line.
type command struct {
	name string   // keyword, upper-cased (keywords are case-insensitive)
	args []string // space-separated arguments; PASS keeps its whole argument
}

// Parse errors. Their text is what the client is told after "-ERR ".
var (
	errEmptyCommand = errors.New("empty command")
	errBadChars     = errors.New("invalid characters in command")
	errBadKeyword   = errors.New("unknown command")
)

// parseCommand splits a command line (without its line ending) into
// keyword and arguments. It rejects control characters (NUL and bare CR
// included) and invalid UTF-8: they are never part of a POP3 command, and
// refusing them keeps binary garbage out of logs and of the backend.
//
// Arguments are separated by spaces; runs of spaces are tolerated because
// some clients send a trailing one. PASS is the exception RFC 1939 allows:
// its argument is the rest of the line verbatim, so passwords may contain
// spaces.
func parseCommand(line []byte) (command, error) {
	if len(line) == 0 {
		return command{}, errEmptyCommand
	}
	for _, b := range line {
		if b < 0x20 || b == 0x7f {
			return command{}, errBadChars
		}
	}
	if !utf8.Valid(line) {
		return command{}, errBadChars
	}
	kw, rest, _ := bytes.Cut(line, []byte{' '})
	// RFC 1939 keywords are three or four letters; longer ones are allowed
	// through so they get the "unknown command" answer, not a syntax one.
	if len(kw) == 0 || len(kw) > 16 {
		return command{}, errBadKeyword
	}
	for _, b := range kw {
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z') {
			return command{}, errBadKeyword
		}
	}
	cmd := command{name: strings.ToUpper(string(kw))}
	if cmd.name == "PASS" {
		if len(rest) > 0 {
			cmd.args = []string{string(rest)}
		}
		return cmd, nil
	}
	for _, f := range bytes.Split(rest, []byte{' '}) {
		if len(f) > 0 {
			cmd.args = append(cmd.args, string(f))
		}
	}
	return cmd, nil
}

// parseNumber parses a POP3 message number or line count: decimal digits
// only (no sign, no spaces). Values too large for any mailbox saturate
// rather than fail, so "TOP 1 99999999999" means "all lines".
func parseNumber(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < 1<<30 {
			n = n*10 + int(c-'0')
		}
	}
	return min(n, 1<<30), true
}

// Line-reading errors.
var (
	// errLineTooLong: the line was over the limit; the rest of it has been
	// read and dropped, so the session can answer and carry on.
	errLineTooLong = errors.New("line too long")
	// errLineFlood: a line went on far past the limit without ending; the
	// session closes rather than read an endless line.
	errLineFlood = errors.New("line too long, closing connection")
)

// floodFactor bounds how much of an overlong line is read and discarded
// (as a multiple of the buffer) before the connection is given up on.
const floodFactor = 16

// readLine reads one line and returns it without its line ending (CRLF,
// or a bare LF, which is accepted as lenient servers do). limit counts the
// line ending; the reader's buffer must hold at least limit bytes. The
// returned slice is only valid until the next read.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		// Drop the rest of the line so the next command starts clean.
		for dropped := len(line); errors.Is(err, bufio.ErrBufferFull); dropped += len(line) {
			if dropped > floodFactor*r.Size() {
				return nil, errLineFlood
			}
			line, err = r.ReadSlice('\n')
		}
		if err != nil {
			return nil, err
		}
		return nil, errLineTooLong
	}
	if err != nil {
		// A partial line at EOF or timeout is not a command.
		return nil, err
	}
	if len(line) > limit {
		return nil, errLineTooLong
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}
