package mailrpc

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"clustermail/mailstore"
)

// Handler serves the local store to other nodes under Prefix. It serves
// whatever it is asked: deciding which node owns an account is the
// caller's job (Deliver on the wrong node would create the account there).
func Handler(s *mailstore.Store, log *slog.Logger) http.Handler {
	return newHandler(s, log)
}

type handler struct {
	s   *mailstore.Store
	log *slog.Logger
	// Limits and timing, fields so tests can shrink them.
	maxBody   int64
	maxArgs   int64
	heartbeat time.Duration
}

func newHandler(s *mailstore.Store, log *slog.Logger) *handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &handler{s: s, log: log, maxBody: maxBody, maxArgs: maxArgs, heartbeat: heartbeat}
}

// endpoint is one method's server side.
type endpoint struct {
	// rawIn: the arguments are in ArgsHeader and the request body is the
	// message, passed as body.
	rawIn bool
	do    func(s *mailstore.Store, a *args, body []byte) (any, error)
}

// rawBody is a reply sent as bytes rather than JSON.
type rawBody []byte

// none is the JSON reply of methods returning only an error.
var none = struct{}{}

var endpoints = map[string]endpoint{
	"EnsureAccount": {do: func(s *mailstore.Store, a *args, _ []byte) (any, error) {
		return none, s.EnsureAccount(a.Account)
	}},
	"DeleteAccount": {do: func(s *mailstore.Store, a *args, _ []byte) (any, error) {
		return none, s.DeleteAccount(a.Account)
	}},
	"Deliver": {rawIn: true, do: func(s *mailstore.Store, a *args, body []byte) (any, error) {
		uid, dup, err := s.Deliver(a.Account, string(a.Key), a.Date.time(), body)
		return deliverReply{UID: uid, Duplicate: dup}, err
	}},
	"DeliverWithin": {rawIn: true, do: func(s *mailstore.Store, a *args, body []byte) (any, error) {
		uid, dup, err := s.DeliverWithin(a.Account, string(a.Key), a.Date.time(), body, a.Quota)
		return deliverReply{UID: uid, Duplicate: dup}, err
	}},
	"Mailboxes": {do: func(s *mailstore.Store, a *args, _ []byte) (any, error) {
		return s.Mailboxes(a.Account)
	}},
	"Mailbox": {do: func(s *mailstore.Store, a *args, _ []byte) (any, error) {
		return s.Mailbox(a.Account, a.Mailbox)
	}},
	"CreateMailbox": {do: func(s *mailstore.Store, a *args, _ []byte) (any, error) {
		return none, s.CreateMailbox(a.Account, a.Mailbox, a.SpecialUse)
	}},
	"RenameMailbox": {do: func(s *mailstore.Store, a *args, _ []byte) (any, error) {
		return none, s.RenameMailbox(a.Account, a.Mailbox, a.To)
	}},
	"DeleteMailbox": {do: func(s *mailstore.Store, a *args, _ []byte) (any, error) {
		return none, s.DeleteMailbox(a.Account, a.Mailbox)
	}},
	"SetSubscribed": {do: func(s *mailstore.Store, a *args, _ []byte) (any, error) {
		return none, s.SetSubscribed(a.Account, a.Mailbox, a.On)
	}},
	"Append": {rawIn: true, do: func(s *mailstore.Store, a *args, body []byte) (any, error) {
		v, uid, err := s.Append(a.Account, a.Mailbox, a.Flags, a.Date.time(), body)
		return appendReply{UIDValidity: v, UID: uid}, err
	}},
	"Messages": {do: func(s *mailstore.Store, a *args, _ []byte) (any, error) {
		ms, err := s.Messages(a.Account, a.Mailbox)
		return toWireMessages(ms), err
	}},
	"Message": {do: func(s *mailstore.Store, a *args, _ []byte) (any, error) {
		m, err := s.Message(a.Account, a.Mailbox, a.UID)
		return toWireMessage(m), err
	}},
	"Body": {do: func(s *mailstore.Store, a *args, _ []byte) (any, error) {
		b, err := s.Body(a.Account, a.Mailbox, a.UID)
		return rawBody(b), err
	}},
	"StoreFlags": {do: func(s *mailstore.Store, a *args, _ []byte) (any, error) {
		up, failed, err := s.StoreFlags(a.Account, a.Mailbox, a.UIDs, a.Op, a.Flags, a.UnchangedSince)
		return storeFlagsReply{Updated: toWireMessages(up), Failed: failed}, err
	}},
	"Copy": {do: func(s *mailstore.Store, a *args, _ []byte) (any, error) {
		v, src, dst, err := s.Copy(a.Account, a.Mailbox, a.UIDs, a.To)
		return transferReply{UIDValidity: v, Src: src, Dst: dst}, err
	}},
	"Move": {do: func(s *mailstore.Store, a *args, _ []byte) (any, error) {
		v, src, dst, err := s.Move(a.Account, a.Mailbox, a.UIDs, a.To)
		return transferReply{UIDValidity: v, Src: src, Dst: dst}, err
	}},
	"Expunge": {do: func(s *mailstore.Store, a *args, _ []byte) (any, error) {
		return s.Expunge(a.Account, a.Mailbox, a.UIDs)
	}},
	"Usage": {do: func(s *mailstore.Store, a *args, _ []byte) (any, error) {
		n, b, err := s.Usage(a.Account)
		return usageReply{Messages: n, Bytes: b}, err
	}},
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	method, ok := strings.CutPrefix(r.URL.Path, Prefix)
	ep, known := endpoints[method]
	if !ok || (!known && method != "Subscribe") {
		writeError(w, http.StatusNotFound, codeNotFound, "mailrpc: unknown method "+strconv.Quote(method))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, codeMethod, "mailrpc: "+method+" needs POST")
		return
	}
	var a args
	if err := h.readArgs(w, r, ep.rawIn, &a); err != nil {
		h.reject(w, r, method, err)
		return
	}
	if method == "Subscribe" {
		h.subscribe(w, r, a.Account)
		return
	}
	var body []byte
	if ep.rawIn {
		var err error
		if body, err = h.readBody(w, r); err != nil {
			h.reject(w, r, method, err)
			return
		}
	}
	res, err := ep.do(h.s, &a, body)
	if err != nil {
		h.fail(w, method, a.Account, err)
		return
	}
	switch v := res.(type) {
	case rawBody:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(v)))
		_, _ = w.Write(v)
	default:
		b, err := json.Marshal(v)
		if err != nil { // cannot happen with the reply types above
			h.fail(w, method, a.Account, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	}
}

// requestError is a request the handler cannot serve, with the status
// and code to answer.
type requestError struct {
	status int
	code   string
	err    error
}

func (e *requestError) Error() string { return e.err.Error() }

func badRequest(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &requestError{http.StatusRequestEntityTooLarge, codeTooLarge, err}
	}
	return &requestError{http.StatusBadRequest, codeBadRequest, err}
}

// readArgs decodes the arguments from the JSON request body, or from
// ArgsHeader for the methods whose body is a message.
func (h *handler) readArgs(w http.ResponseWriter, r *http.Request, inHeader bool, a *args) error {
	var raw []byte
	if inHeader {
		v := r.Header.Get(ArgsHeader)
		if int64(base64.RawURLEncoding.DecodedLen(len(v))) > h.maxArgs {
			return badRequest(&http.MaxBytesError{Limit: h.maxArgs})
		}
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil {
			return badRequest(errors.New("mailrpc: decode " + ArgsHeader + ": " + err.Error()))
		}
		raw = b
	} else {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxArgs))
		if err != nil {
			return badRequest(err)
		}
		raw = b
	}
	if err := json.Unmarshal(raw, a); err != nil {
		return badRequest(errors.New("mailrpc: decode arguments: " + err.Error()))
	}
	return nil
}

// readBody reads a message body within the size limit.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > h.maxBody {
		return nil, badRequest(&http.MaxBytesError{Limit: h.maxBody})
	}
	var b bytes.Buffer
	if r.ContentLength > 0 {
		// Room for the EOF read too, so a 5 MiB body is not doubled.
		b.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	if _, err := b.ReadFrom(http.MaxBytesReader(w, r.Body, h.maxBody)); err != nil {
		return nil, badRequest(err)
	}
	return b.Bytes(), nil
}

func (h *handler) reject(w http.ResponseWriter, r *http.Request, method string, err error) {
	var re *requestError
	if !errors.As(err, &re) {
		re = &requestError{http.StatusBadRequest, codeBadRequest, err}
	}
	h.log.Warn("mail rpc: bad request", "method", method, "remote", r.RemoteAddr, "err", err)
	writeError(w, re.status, re.code, err.Error())
}

// fail answers a store error with the code of its sentinel.
func (h *handler) fail(w http.ResponseWriter, method, account string, err error) {
	code, status := codeInternal, http.StatusInternalServerError
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			code, status = s.code, s.status
			break
		}
	}
	// Refusals are the caller's business; only a failing store is ours.
	if code == codeInternal || errors.Is(err, mailstore.ErrCorrupt) {
		h.log.Error("mail rpc failed", "method", method, "account", account, "err", err)
	}
	writeError(w, status, code, err.Error())
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(errorReply{Code: code, Error: msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// subscribe streams the account's change signals until the caller goes
// away or the store closes.
func (h *handler) subscribe(w http.ResponseWriter, r *http.Request, account string) {
	ch, cancel := h.s.Subscribe(account)
	defer cancel()
	rc := http.NewResponseController(w)
	// A write deadline left on the connection would break the next request
	// served on it.
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	send := func(line string) bool {
		// A peer that stops reading must not pin this goroutine forever.
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := io.WriteString(w, line+"\n"); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(lineReady) {
		return
	}
	t := time.NewTicker(h.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case _, ok := <-ch:
			if !ok || !send(lineChange) {
				return
			}
		case <-t.C:
			// Server.Shutdown does not end streaming responses and Close
			// of the store does not end subscriptions, so a stopped node
			// would keep heartbeating for a store that is gone and the
			// client would never move on. Ending the stream once the
			// store is closed lets it reconnect to the restarted node.
			if _, _, err := h.s.Usage(account); errors.Is(err, mailstore.ErrClosed) {
				return
			}
			if !send(lineBeat) {
				return
			}
		}
	}
}
