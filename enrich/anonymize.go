package enrich

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
)

// IPMode says what of the client's address reaches the envelope (and so the
// disk and Kafka): all of it, a truncated network, or a keyed hash.
type IPMode string

const (
	IPKeep     IPMode = "none"     // the address as is
	IPTruncate IPMode = "truncate" // IPv4 /24, IPv6 /48: the last octet or the host part zeroed
	IPHash     IPMode = "hash"     // HMAC-SHA-256 under a secret salt, first 16 bytes in hex
)

// IPAnonymizer applies an IPMode. The zero value keeps addresses.
type IPAnonymizer struct {
	mode IPMode
	salt []byte
}

// minSaltBytes keeps the hash from being reversed by hashing all 2^32 IPv4
// addresses under a guessable salt.
const minSaltBytes = 16

// NewIPAnonymizer validates a --ip-anonymize mode and its salt.
func NewIPAnonymizer(mode string, salt []byte) (IPAnonymizer, error) {
	switch IPMode(mode) {
	case "", IPKeep, IPTruncate:
		return IPAnonymizer{mode: IPMode(mode)}, nil
	case IPHash:
		if len(salt) < minSaltBytes {
			return IPAnonymizer{}, fmt.Errorf("ip hashing needs a secret salt of at least %d bytes (got %d)", minSaltBytes, len(salt))
		}
		return IPAnonymizer{mode: IPHash, salt: salt}, nil
	}
	return IPAnonymizer{}, errors.New("unknown ip anonymization " + fmt.Sprintf("%q", mode) + " (want none, truncate or hash)")
}

// Apply returns what the envelope records for a.
func (z IPAnonymizer) Apply(a netip.Addr) string {
	switch z.mode {
	case IPTruncate:
		bits := 24
		if a.Is6() {
			bits = 48
		}
		p, _ := a.Prefix(bits)
		return p.Addr().String()
	case IPHash:
		m := hmac.New(sha256.New, z.salt)
		b := a.As16()
		m.Write(b[:])
		return hex.EncodeToString(m.Sum(nil)[:16])
	}
	return a.String()
}
