package mailrpc

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Bad requests get a clear status and code, never a panic or a 5xx.
func TestHandlerRejectsBadInput(t *testing.T) {
	s := openStore(t)
	if err := s.EnsureAccount(alice); err != nil {
		t.Fatal(err)
	}
	h := newHandler(s, quiet)
	h.maxArgs = 1 << 10
	h.maxBody = 1 << 10
	args := func(js string) string { return base64.RawURLEncoding.EncodeToString([]byte(js)) }

	for _, tc := range []struct {
		name       string
		method     string
		path       string
		args       string // ArgsHeader value, "" for none
		body       io.Reader
		wantStatus int
		wantCode   string
	}{
		{"GET", "GET", Prefix + "Mailboxes", "", nil, 405, codeMethod},
		{"unknown method", "POST", Prefix + "Nope", "", strings.NewReader(`{}`), 404, codeNotFound},
		{"no method", "POST", Prefix, "", strings.NewReader(`{}`), 404, codeNotFound},
		{"outside prefix", "POST", "/internal/other/Mailboxes", "", strings.NewReader(`{}`), 404, codeNotFound},
		{"not JSON", "POST", Prefix + "Mailboxes", "", strings.NewReader(`{`), 400, codeBadRequest},
		{"empty body", "POST", Prefix + "Mailboxes", "", strings.NewReader(``), 400, codeBadRequest},
		{"wrong type", "POST", Prefix + "Expunge", "", strings.NewReader(`{"account":"alice@example.com","mailbox":"INBOX","uids":"all"}`), 400, codeBadRequest},
		{"negative UID", "POST", Prefix + "Message", "", strings.NewReader(`{"account":"alice@example.com","mailbox":"INBOX","uid":-1}`), 400, codeBadRequest},
		{"args too large", "POST", Prefix + "Mailboxes", "", strings.NewReader(`{"account":"` + strings.Repeat("a", 2<<10) + `"}`), 413, codeTooLarge},
		{"null args", "POST", Prefix + "Mailboxes", "", strings.NewReader(`null`), 400, "bad_account"},
		{"bad op", "POST", Prefix + "StoreFlags", "", strings.NewReader(`{"account":"alice@example.com","mailbox":"INBOX","uids":[1],"op":99}`), 400, "bad_argument"},
		{"missing mailbox", "POST", Prefix + "Messages", "", strings.NewReader(`{"account":"alice@example.com","mailbox":"Nope"}`), 404, "no_mailbox"},
		{"append without args", "POST", Prefix + "Append", "", strings.NewReader("body"), 400, codeBadRequest},
		{"append bad base64", "POST", Prefix + "Append", "!!!", strings.NewReader("body"), 400, codeBadRequest},
		{"append args not JSON", "POST", Prefix + "Append", args("[1]"), strings.NewReader("body"), 400, codeBadRequest},
		{"append args too large", "POST", Prefix + "Append", args(`{"account":"` + strings.Repeat("a", 2<<10) + `"}`), strings.NewReader("body"), 413, codeTooLarge},
		{"append body too large", "POST", Prefix + "Append", args(`{"account":"alice@example.com","mailbox":"INBOX"}`), strings.NewReader(strings.Repeat("x", 2<<10)), 413, codeTooLarge},
		// No Content-Length: the limit must hold while reading.
		{"append body too large, streamed", "POST", Prefix + "Append", args(`{"account":"alice@example.com","mailbox":"INBOX"}`), io.MultiReader(strings.NewReader(strings.Repeat("x", 2<<10))), 413, codeTooLarge},
		{"deliver without key", "POST", Prefix + "Deliver", args(`{"account":"alice@example.com"}`), strings.NewReader("body"), 400, "bad_argument"},
		{"deliver key not base64", "POST", Prefix + "Deliver", args(`{"account":"alice@example.com","key":"%%"}`), strings.NewReader("body"), 400, codeBadRequest},
		{"absurd date", "POST", Prefix + "Append", args(`{"account":"alice@example.com","mailbox":"INBOX","date":{"ns":-9223372036854775808,"off":2147483647}}`), strings.NewReader("body"), 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, tc.body)
			if _, ok := tc.body.(*strings.Reader); !ok {
				req.ContentLength = -1
			}
			if tc.args != "" {
				req.Header.Set(ArgsHeader, tc.args)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.wantStatus, rec.Body)
			}
			if tc.wantCode == "" {
				return
			}
			var er errorReply
			if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil {
				t.Fatalf("error body %q: %v", rec.Body, err)
			}
			if er.Code != tc.wantCode || er.Error == "" {
				t.Fatalf("error reply %+v, want code %q with a message", er, tc.wantCode)
			}
		})
	}
}

// curl can speak the protocol: plain JSON in, JSON or bytes out.
func TestHandlerWireFormat(t *testing.T) {
	s := openStore(t)
	if _, _, err := s.Deliver(alice, "q/1", testDate, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	h := newHandler(s, quiet)
	post := func(method, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, Prefix+method, strings.NewReader(body)))
		return rec
	}
	rec := post("Body", `{"account":"alice@example.com","mailbox":"INBOX","uid":1}`)
	if rec.Code != 200 || rec.Body.String() != "hello" || rec.Header().Get("Content-Type") != "application/octet-stream" {
		t.Errorf("Body: %d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	rec = post("Usage", `{"account":"alice@example.com"}`)
	if rec.Code != 200 || rec.Body.String() != `{"messages":1,"bytes":5}` {
		t.Errorf("Usage: %d %s", rec.Code, rec.Body)
	}
}
