package raftstore

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
)

// withRequestID marks an entry whose type byte is followed by an 8-byte
// request id. The state machine remembers the outcome of each id for a
// while, so a proposal retried after an uncertain failure (the commit went
// through but the answer was lost) gets the first outcome back instead of
// being applied again. Entries without the flag apply as before.
const withRequestID CommandType = 64

// requestIDLen is the length of a request id.
const requestIDLen = 8

// Encode builds a log entry: the type byte, a fresh request id, then the
// payload as JSON. JSON keeps old entries readable by newer nodes: added
// fields default to zero.
func Encode(t CommandType, payload any) ([]byte, error) {
	if t&withRequestID != 0 {
		panic(fmt.Sprintf("raftstore: command type %d collides with the request-id flag", t))
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode command %d: %w", t, err)
	}
	out := make([]byte, 1+requestIDLen, 1+requestIDLen+len(b))
	out[0] = byte(t | withRequestID)
	_, _ = rand.Read(out[1 : 1+requestIDLen])
	return append(out, b...), nil
}

// Decode unmarshals a payload inside a handler. A payload that does not
// decode was written by a buggy proposer: stop rather than diverge.
func Decode(payload []byte, v any) {
	if err := json.Unmarshal(payload, v); err != nil {
		panic(fmt.Sprintf("raftstore: decode command payload: %v", err))
	}
}

// Error codes of a CommandError, mapped to HTTP statuses by the API.
const (
	CodeNotFound = "not_found"
	CodeConflict = "conflict"
	CodeInvalid  = "invalid"
)

// CommandError is a business error returned by a handler: the command was
// applied (the log moved on) but changed nothing. It survives forwarding
// from the leader to the proposer.
type CommandError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *CommandError) Error() string { return e.Message }

// Errorf builds a CommandError.
func Errorf(code, format string, args ...any) *CommandError {
	return &CommandError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// IsCode reports whether err is a CommandError with the given code.
func IsCode(err error, code string) bool {
	var ce *CommandError
	return errors.As(err, &ce) && ce.Code == code
}

type noReadBackKey struct{}

// NoReadBack marks a proposal whose proposer will not read its effect back
// from its own replica: it need not wait, after the commit, until its
// replica has applied the entry. A follower learns of a commit only with
// the leader's next message, which can be a while when writes pause.
func NoReadBack(ctx context.Context) context.Context {
	return context.WithValue(ctx, noReadBackKey{}, true)
}

type mayWaitKey struct{}

// MayWait marks a proposal that is in no hurry (a delivery report, not a
// client's accept): when nothing is on its way to the leader, it waits a
// moment for other proposals to share its log entry, and every node then
// writes and fsyncs one entry for all of them. The wait ends early once
// company proposals are pending (the most that can come, e.g. one per
// delivery worker) or one in a hurry arrives.
func MayWait(ctx context.Context, company int) context.Context {
	return context.WithValue(ctx, mayWaitKey{}, company)
}

// WaitsForCompany returns the company of a proposal marked by MayWait, or 0.
func WaitsForCompany(ctx context.Context) int {
	v, _ := ctx.Value(mayWaitKey{}).(int)
	return v
}

// ReadsBack reports whether the proposer of ctx reads its write back (the
// default: read-your-writes on the proposing node).
func ReadsBack(ctx context.Context) bool {
	v, _ := ctx.Value(noReadBackKey{}).(bool)
	return !v
}
