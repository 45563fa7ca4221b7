package api

import (
	"context"
	"time"
)

// DKIMKey is a domain's DKIM key as the API shows it: the public record to
// publish, never the private key.
type DKIMKey struct {
	Domain    string    `json:"domain"`
	Selector  string    `json:"selector"`
	Algorithm string    `json:"algorithm"` // rsa or ed25519
	Created   time.Time `json:"created"`
	// Active: this key signs (the oldest key of its algorithm in the
	// domain); a newer one takes over when it is removed.
	Active bool `json:"active"`
	// DNSName and DNSValue are the TXT record to publish.
	DNSName  string `json:"dns_name"`
	DNSValue string `json:"dns_value"`
}

// DKIMGenerateRequest creates a key. Empty fields take the defaults:
// algorithm rsa, a selector made of the algorithm and the date.
type DKIMGenerateRequest struct {
	Domain    string `json:"domain"`
	Selector  string `json:"selector,omitempty"`
	Algorithm string `json:"algorithm,omitempty"`
}

// DKIMKeys lists DKIM keys, of one domain when domain is not empty.
func (c *Client) DKIMKeys(ctx context.Context, domain string) ([]DKIMKey, error) {
	var k []DKIMKey
	p := "/v1/dkim"
	if domain != "" {
		p += "/" + esc(domain)
	}
	return k, c.do(ctx, "GET", p, nil, &k)
}

// GenerateDKIMKey makes a new key for a hosted domain.
func (c *Client) GenerateDKIMKey(ctx context.Context, r DKIMGenerateRequest) (DKIMKey, error) {
	var k DKIMKey
	return k, c.do(ctx, "POST", "/v1/dkim", r, &k)
}

// RemoveDKIMKey deletes a domain's key.
func (c *Client) RemoveDKIMKey(ctx context.Context, domain, selector string) error {
	return c.do(ctx, "DELETE", "/v1/dkim/"+esc(domain)+"/"+esc(selector), nil, nil)
}
