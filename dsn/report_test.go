package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
)

// report is a DSN parsed back with the standard library only, the way a
// receiving mail client would, independently of the code that built it.
type report struct {
	header       mail.Header
	boundary     string
	parts        []reportPart
	perMessage   textproto.MIMEHeader
	perRecipient []textproto.MIMEHeader
}

type reportPart struct {
	header textproto.MIMEHeader // as sent, including Content-Transfer-Encoding
	body   []byte               // after transfer decoding
}

// parseReport parses raw as a multipart/report of three parts and splits
// its delivery-status part into field groups.
func parseReport(raw []byte) (*report, error) {
	if err := checkLines(raw); err != nil {
		return nil, err
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("read message: %w", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("content type: %w", err)
	}
	if mt != "multipart/report" || params["report-type"] != "delivery-status" {
		return nil, fmt.Errorf("content type %q %v, want multipart/report; report-type=delivery-status", mt, params)
	}
	r := &report{header: msg.Header, boundary: params["boundary"]}
	mr := multipart.NewReader(msg.Body, r.boundary)
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("part %d: %w", len(r.parts)+1, err)
		}
		var body io.Reader = p
		switch cte := strings.ToLower(p.Header.Get("Content-Transfer-Encoding")); cte {
		case "", "7bit":
		case "quoted-printable":
			body = quotedprintable.NewReader(p)
		default:
			return nil, fmt.Errorf("part %d: unexpected transfer encoding %q", len(r.parts)+1, cte)
		}
		b, err := io.ReadAll(body)
		if err != nil {
			return nil, fmt.Errorf("part %d: read: %w", len(r.parts)+1, err)
		}
		r.parts = append(r.parts, reportPart{p.Header, b})
	}
	if len(r.parts) != 3 {
		return nil, fmt.Errorf("%d parts, want 3", len(r.parts))
	}
	for i, want := range []string{"text/plain", "message/delivery-status", "text/rfc822-headers"} {
		mt, _, err := mime.ParseMediaType(r.parts[i].header.Get("Content-Type"))
		if err != nil || mt != want {
			return nil, fmt.Errorf("part %d: content type %q (%v), want %s", i+1, mt, err, want)
		}
	}

	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(r.parts[1].body)))
	for {
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			if r.perMessage == nil {
				r.perMessage = h
			} else {
				r.perRecipient = append(r.perRecipient, h)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("delivery-status fields: %w", err)
		}
	}
	return r, nil
}

// checkLines checks what RFC 5322 demands of every line: CRLF endings, no
// stray CR or LF, at most 998 octets.
func checkLines(raw []byte) error {
	for i, l := range bytes.SplitAfter(raw, []byte("\n")) {
		if len(l) == 0 {
			continue // after the final LF
		}
		if !bytes.HasSuffix(l, []byte("\r\n")) {
			return fmt.Errorf("line %d %.40q: not ended by CRLF", i+1, l)
		}
		l = l[:len(l)-2]
		if bytes.ContainsAny(l, "\r\n") {
			return fmt.Errorf("line %d %.40q: bare CR", i+1, l)
		}
		if len(l) > 998 {
			return fmt.Errorf("line %d: %d octets", i+1, len(l))
		}
	}
	return nil
}

// fields returns h as a plain map with one value per key, or an error if a
// field occurs twice.
func fields(h textproto.MIMEHeader) (map[string]string, error) {
	m := map[string]string{}
	for k, vs := range h {
		if len(vs) != 1 {
			return nil, fmt.Errorf("field %s occurs %d times", k, len(vs))
		}
		m[k] = vs[0]
	}
	return m, nil
}
