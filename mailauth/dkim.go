package mailauth

import (
	"bytes"
	"context"
	"errors"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
)

// maxSignatures bounds the DKIM work one message can cause: each
// signature costs a DNS lookup and a hash of the body.
const maxSignatures = 5

// dkimOutcome is the result of one DKIM-Signature field.
type dkimOutcome struct {
	domain, identifier string
	result             authres.ResultValue
	reason             string
}

// checkDKIM verifies the message's signatures, keys fetched through the
// checker's resolver within ctx.
func (c *Checker) checkDKIM(ctx context.Context, msg []byte) []dkimOutcome {
	opts := &dkim.VerifyOptions{
		LookupTXT:        func(name string) ([]string, error) { return c.cfg.Resolver.LookupTXT(ctx, name) },
		MaxVerifications: maxSignatures,
	}
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), opts)
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		return []dkimOutcome{{result: authres.ResultPermError, reason: "unreadable header"}}
	}
	out := make([]dkimOutcome, 0, len(verifs))
	for _, v := range verifs {
		o := dkimOutcome{domain: v.Domain, identifier: v.Identifier, result: authres.ResultPass}
		switch {
		case v.Err == nil:
		case dkim.IsTempFail(v.Err):
			o.result, o.reason = authres.ResultTempError, v.Err.Error()
		case dkim.IsPermFail(v.Err):
			o.result, o.reason = authres.ResultPermError, v.Err.Error()
		default:
			o.result, o.reason = authres.ResultFail, v.Err.Error()
		}
		out = append(out, o)
	}
	return out
}

// bestDKIM summarises the signatures for logs: pass if one passed.
func bestDKIM(sigs []dkimOutcome) string {
	if len(sigs) == 0 {
		return string(authres.ResultNone)
	}
	best := sigs[0].result
	for _, s := range sigs {
		if s.result == authres.ResultPass {
			return string(s.result)
		}
	}
	return string(best)
}
