package imapserver

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

func (c *Conn) handleStore(dec *imapwire.Decoder, numKind NumKind) error {
	var (
		numSet imap.NumSet
		item   string
	)
	if !dec.ExpectSP() || !dec.ExpectNumSet(numKind.wire(), &numSet) || !dec.ExpectSP() {
		return dec.Err()
	}
	// RFC 4466 store-modifiers; UNCHANGEDSINCE (RFC 7162) is the only one
	// known. A failed condition is reported by the session with an OK or
	// NO response carrying the MODIFIED code.
	options := imap.StoreOptions{}
	var hasUnchangedSince bool
	if isList, err := dec.List(func() error {
		var name string
		if !dec.ExpectAtom(&name) {
			return dec.Err()
		}
		if !strings.EqualFold(name, "UNCHANGEDSINCE") || !c.server.options.caps().Has(imap.CapCondStore) {
			return newClientBugError("Unknown STORE modifier")
		}
		hasUnchangedSince = true
		if !dec.ExpectSP() || !dec.ExpectModSeq(&options.UnchangedSince) {
			return dec.Err()
		}
		return nil
	}); err != nil {
		return err
	} else if isList && !dec.ExpectSP() {
		return dec.Err()
	}
	if !dec.ExpectAtom(&item) || !dec.ExpectSP() {
		return dec.Err()
	}
	var flags []imap.Flag
	isList, err := dec.List(func() error {
		flag, err := internal.ExpectFlag(dec)
		if err != nil {
			return err
		}
		flags = append(flags, flag)
		return nil
	})
	if err != nil {
		return err
	} else if !isList {
		for {
			flag, err := internal.ExpectFlag(dec)
			if err != nil {
				return err
			}
			flags = append(flags, flag)

			if !dec.SP() {
				break
			}
		}
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}

	item = strings.ToUpper(item)
	silent := strings.HasSuffix(item, ".SILENT")
	item = strings.TrimSuffix(item, ".SILENT")

	var op imap.StoreFlagsOp
	switch {
	case strings.HasPrefix(item, "+"):
		op = imap.StoreFlagsAdd
		item = strings.TrimPrefix(item, "+")
	case strings.HasPrefix(item, "-"):
		op = imap.StoreFlagsDel
		item = strings.TrimPrefix(item, "-")
	default:
		op = imap.StoreFlagsSet
	}

	if item != "FLAGS" {
		return newClientBugError("STORE can only change FLAGS")
	}

	if err := c.checkState(imap.ConnStateSelected); err != nil {
		return err
	}

	if hasUnchangedSince {
		c.enableCondStore()
		if options.UnchangedSince == 0 {
			// RFC 7162: UNCHANGEDSINCE 0 always fails, for every message
			// of the set. StoreOptions cannot tell 0 from "absent", so it
			// is answered here, for a set whose members are known.
			if numSet.Dynamic() {
				return newClientBugError("UNCHANGEDSINCE 0 needs a static message set")
			}
			return &imap.Error{
				Type: imap.StatusResponseTypeOK,
				Code: imap.ResponseCode("MODIFIED " + numSet.String()),
				Text: "Conditional STORE failed",
			}
		}
	}

	w := &FetchWriter{conn: c}
	return c.session.Store(w, numSet, &imap.StoreFlags{
		Op:     op,
		Silent: silent,
		Flags:  flags,
	}, &options)
}
