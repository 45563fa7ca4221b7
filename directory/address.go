package directory

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"clustermail/raftstore"
)

// Normalize lowercases an address; the cluster treats local parts
// case-insensitively, as users expect.
func Normalize(address string) string { return strings.ToLower(strings.TrimSpace(address)) }

// DomainOf returns the lowercased domain of an address.
func DomainOf(address string) string {
	i := strings.LastIndexByte(address, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(address[i+1:])
}

// ValidateDomain checks a domain name's syntax (RFC 1035 labels).
func ValidateDomain(name string) error {
	if name == "" || len(name) > 253 {
		return raftstore.Errorf(raftstore.CodeInvalid, "invalid domain %q: length must be 1-253", name)
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return raftstore.Errorf(raftstore.CodeInvalid, "invalid domain %q: needs at least two labels", name)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return raftstore.Errorf(raftstore.CodeInvalid, "invalid domain %q: bad label %q", name, l)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return raftstore.Errorf(raftstore.CodeInvalid, "invalid domain %q: bad character %q", name, c)
			}
		}
	}
	return nil
}

// ValidateAddress checks a mailbox address (local@domain): a dot-atom local
// part of at most 64 octets and a valid domain.
func ValidateAddress(addr string) error {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return raftstore.Errorf(raftstore.CodeInvalid, "invalid address %q: want local@domain", addr)
	}
	local := addr[:i]
	if !utf8.ValidString(local) {
		return raftstore.Errorf(raftstore.CodeInvalid, "invalid address %q: local part is not UTF-8", addr)
	}
	// Measured in its normal form, which is what is stored: lowercasing
	// can lengthen a few letters (İ, Ⱥ: two octets become three).
	if len(strings.ToLower(local)) > 64 {
		return raftstore.Errorf(raftstore.CodeInvalid, "invalid address %q: local part longer than 64", addr)
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return raftstore.Errorf(raftstore.CodeInvalid, "invalid address %q: misplaced dot", addr)
	}
	for _, c := range local {
		if c <= ' ' || c == 0x7f || strings.ContainsRune("\"(),:;<>@[\\]", c) {
			return raftstore.Errorf(raftstore.CodeInvalid, "invalid address %q: bad character %q in local part", addr, c)
		}
	}
	if err := ValidateDomain(addr[i+1:]); err != nil {
		return fmt.Errorf("invalid address %q: %w", addr, err)
	}
	return nil
}
