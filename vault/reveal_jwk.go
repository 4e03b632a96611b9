package vault

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strings"

	"github.com/cardvault/cardvault/internal/clienttext"
)

// DeviceJWK is the fresh RSA public key a device sends to receive a secure
// view, and the string its unrestricted key signed.
type DeviceJWK struct {
	Public *rsa.PublicKey
	// KeyID is the JWK's kid; HasKeyID says it had one (it may be "").
	KeyID    string
	HasKeyID bool
	// SignedString is the JWK's members as received, sorted by name, each
	// "name:value", joined with ";".
	SignedString string
	// Fingerprint is the SHA-256 of the key's PKCS#1 DER encoding, as for
	// Jiko client keys: a key that received card data once never does so
	// again, on either surface.
	Fingerprint []byte
}

// Device JWK bounds: the RSA sizes a phone makes, and the one exponent.
const (
	minDeviceKeyBits = 2048
	maxDeviceKeyBits = 4096
	maxJWKBytes      = 4096
)

// jwkMembers is the allow-list of members a device JWK may carry, with
// the one value a fixed member must have ("" for members checked on their
// own).
var jwkMembers = map[string]string{"kty": "RSA", "n": "", "e": "", "use": "enc", "alg": "RS256", "kid": ""}

// privateJWKMembers are RSA private-key members (RFC 7518 §6.3.2) and the
// symmetric key member: a request carrying one leaked a private key.
var privateJWKMembers = map[string]bool{"d": true, "p": true, "q": true, "dp": true, "dq": true, "qi": true, "oth": true, "k": true}

// ParseDeviceJWK validates a device's RSA public JWK and rebuilds the
// string its signature covers. The JWK must be a JSON object of string
// members from the allow-list, each at most once; kty RSA; n of 2048 to
// 4096 bits; e = 65537; use "enc" and alg "RS256" when present. n and e are
// base64url without padding (RFC 7518); padded standard base64, as in the
// provider's own example, is accepted too. Errors name jwk[member].
func ParseDeviceJWK(raw []byte) (*DeviceJWK, error) {
	if len(raw) > maxJWKBytes {
		return nil, Invalid("jwk", "is too large")
	}
	members, err := jwkObject(raw)
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"kty", "n", "e"} {
		if _, ok := members[name]; !ok {
			return nil, Invalid(field("jwk", name), "is required")
		}
	}
	names := make([]string, 0, len(members))
	for name := range members {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if fixed := jwkMembers[name]; fixed != "" && fixed != members[name] {
			return nil, Invalid(field("jwk", name), fmt.Sprintf("must be %q", fixed))
		}
	}
	pub, err := jwkRSAKey(members["n"], members["e"])
	if err != nil {
		return nil, err
	}
	kid, hasKID := members["kid"]
	if len(kid) > 128 || strings.ContainsAny(kid, ";") || !printableASCII(kid) {
		return nil, Invalid("jwk[kid]", "must be at most 128 printable characters without ';'")
	}
	pairs := make([]string, len(names))
	for i, name := range names {
		pairs[i] = name + ":" + members[name]
	}
	sum := sha256.Sum256(x509.MarshalPKCS1PublicKey(pub))
	return &DeviceJWK{Public: pub, KeyID: kid, HasKeyID: hasKID, SignedString: strings.Join(pairs, ";"), Fingerprint: sum[:]}, nil
}

// field names a member of an object the way Solaris's errors do; a
// member name a client made up passes the client-text rule first.
func field(object, member string) string {
	return object + "[" + clienttext.Name(member) + "]"
}

// jwkObject reads a JSON object whose members are all strings, refusing
// duplicate names: the signed string and the key used must come from the
// same members.
func jwkObject(raw []byte) (map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, Invalid("jwk", "must be a JSON object")
	}
	members := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, Invalid("jwk", "must be a JSON object")
		}
		name, _ := tok.(string)
		if privateJWKMembers[name] {
			return nil, Invalid(field("jwk", name), "is a private key member; send the public key only")
		}
		if _, ok := jwkMembers[name]; !ok {
			return nil, Invalid(field("jwk", name), "is not allowed; use kty, n, e, use, alg and kid")
		}
		if _, dup := members[name]; dup {
			return nil, Invalid(field("jwk", name), "appears more than once")
		}
		var value string
		if err := dec.Decode(&value); err != nil {
			return nil, Invalid(field("jwk", name), "must be a string")
		}
		members[name] = value
	}
	if _, err := dec.Token(); err != nil {
		return nil, Invalid("jwk", "must be a JSON object")
	}
	if _, err := dec.Token(); err == nil {
		return nil, Invalid("jwk", "must be a single JSON object")
	}
	return members, nil
}

// jwkRSAKey decodes and checks n and e.
func jwkRSAKey(nText, eText string) (*rsa.PublicKey, error) {
	nBytes, ok := decodeBase64(nText)
	if !ok {
		return nil, Invalid("jwk[n]", "must be base64url")
	}
	n := new(big.Int).SetBytes(nBytes)
	if bits := n.BitLen(); bits < minDeviceKeyBits || bits > maxDeviceKeyBits {
		return nil, Invalid("jwk[n]", fmt.Sprintf("RSA modulus must be %d to %d bits, got %d", minDeviceKeyBits, maxDeviceKeyBits, bits))
	}
	if n.Bit(0) == 0 {
		return nil, Invalid("jwk[n]", "RSA modulus must be odd")
	}
	eBytes, ok := decodeBase64(eText)
	if !ok {
		return nil, Invalid("jwk[e]", "must be base64url")
	}
	if e := new(big.Int).SetBytes(eBytes); !e.IsInt64() || e.Int64() != 65537 {
		return nil, Invalid("jwk[e]", "RSA public exponent must be 65537 (AQAB)")
	}
	return &rsa.PublicKey{N: n, E: 65537}, nil
}

// decodeBase64 reads base64url without padding, or padded standard base64.
func decodeBase64(s string) ([]byte, bool) {
	if s == "" {
		return nil, false
	}
	if b, err := base64.RawURLEncoding.Strict().DecodeString(s); err == nil {
		return b, true
	}
	if b, err := base64.StdEncoding.Strict().DecodeString(s); err == nil {
		return b, true
	}
	return nil, false
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
