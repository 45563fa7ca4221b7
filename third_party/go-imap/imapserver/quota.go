package imapserver

// QUOTA (RFC 9208) read-only commands: GETQUOTA and GETQUOTAROOT. Added by
// clustermail; SETQUOTA (QUOTASET) is not implemented.

import (
	"sort"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// QuotaData is a quota root with the usage and limit of its resources.
type QuotaData struct {
	Root      string
	Resources map[imap.QuotaResourceType]QuotaResourceData
}

// QuotaResourceData is the usage and limit of one resource, in the units
// RFC 9208 gives it (STORAGE is in units of 1024 octets).
type QuotaResourceData struct {
	Usage int64
	Limit int64
}

// SessionQuota is an IMAP session which supports QUOTA.
type SessionQuota interface {
	Session

	// Authenticated state
	GetQuota(root string) (*QuotaData, error)
	// GetQuotaRoot returns the quota roots of a mailbox and their quotas.
	GetQuotaRoot(mailbox string) ([]QuotaData, error)
}

func (c *Conn) quotaSession() (SessionQuota, error) {
	session, ok := c.session.(SessionQuota)
	if !ok || !c.server.options.caps().Has(imap.CapQuota) {
		return nil, newClientBugError("QUOTA is not supported")
	}
	return session, nil
}

func (c *Conn) handleGetQuota(dec *imapwire.Decoder) error {
	var root string
	if !dec.ExpectSP() || !dec.ExpectAString(&root) || !dec.ExpectCRLF() {
		return dec.Err()
	}
	if err := c.checkState(imap.ConnStateAuthenticated); err != nil {
		return err
	}
	session, err := c.quotaSession()
	if err != nil {
		return err
	}
	data, err := session.GetQuota(root)
	if err != nil {
		return err
	}
	return c.writeQuota(data)
}

func (c *Conn) handleGetQuotaRoot(dec *imapwire.Decoder) error {
	var mailbox string
	if !dec.ExpectSP() || !dec.ExpectMailbox(&mailbox) || !dec.ExpectCRLF() {
		return dec.Err()
	}
	if err := c.checkState(imap.ConnStateAuthenticated); err != nil {
		return err
	}
	session, err := c.quotaSession()
	if err != nil {
		return err
	}
	quotas, err := session.GetQuotaRoot(mailbox)
	if err != nil {
		return err
	}

	enc := newResponseEncoder(c)
	enc.Atom("*").SP().Atom("QUOTAROOT").SP().Mailbox(mailbox)
	for _, q := range quotas {
		enc.SP().String(q.Root)
	}
	err = enc.CRLF()
	enc.end()
	if err != nil {
		return err
	}
	for i := range quotas {
		if err := c.writeQuota(&quotas[i]); err != nil {
			return err
		}
	}
	return nil
}

func (c *Conn) writeQuota(data *QuotaData) error {
	types := make([]imap.QuotaResourceType, 0, len(data.Resources))
	for t := range data.Resources {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool { return types[i] < types[j] })

	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("QUOTA").SP().String(data.Root).SP()
	enc.List(len(types), func(i int) {
		res := data.Resources[types[i]]
		enc.Atom(string(types[i])).SP().Number64(res.Usage).SP().Number64(res.Limit)
	})
	return enc.CRLF()
}
