package hsm

import (
	"context"
	"crypto/rsa"
	"time"

	"github.com/cardvault/cardvault/vault"
)

// Serving is the request path's handle on the token: the operations the
// vault's narrow paths need (vault.Keys), the audit key's MACs that
// checkpoint the audit chains, and what an operator reads of the token's
// health. It has no key generation, import, export, destruction, raw
// block decryption or seal under a named version: those are the
// ceremonies', on the *Module they open. The PIN view's PINDigits
// and PIN verification's ZonePINDigits decipher format 4 PIN blocks
// only, and return nothing of a block that is not one. `serve` holds only a Serving, so
// the type system keeps it from an admin operation.
type Serving struct{ m *Module }

// Compile-time: the request path's handle is exactly a vault.Keys (and an
// audit key for sqlstore, which names the same two methods).
var _ vault.Keys = (*Serving)(nil)

// ServingOf is the request path's handle on an open module: serve's (its
// only handle), and the bench's, which serves the module it measures.
func ServingOf(m *Module) *Serving { return &Serving{m} }

func (s *Serving) Seal(ctx context.Context, aad, plaintext []byte) ([]byte, uint32, error) {
	return s.m.Seal(ctx, aad, plaintext)
}

func (s *Serving) Open(ctx context.Context, aad, sealed []byte) ([]byte, error) {
	return s.m.Open(ctx, aad, sealed)
}

func (s *Serving) FingerprintPAN(ctx context.Context, pan []byte) ([]byte, uint32, error) {
	return s.m.FingerprintPAN(ctx, pan)
}

func (s *Serving) PANFingerprints(ctx context.Context, pan []byte) ([]vault.PANFingerprint, error) {
	return s.m.PANFingerprints(ctx, pan)
}

func (s *Serving) RequestDigest(ctx context.Context, version uint32, request []byte) ([]byte, uint32, error) {
	return s.m.RequestDigest(ctx, version, request)
}

func (s *Serving) SetPINPublicKey(ctx context.Context, version uint32) (*rsa.PublicKey, uint32, error) {
	return s.m.SetPINPublicKey(ctx, version)
}

func (s *Serving) SetPINVersions(ctx context.Context) (uint32, uint32, time.Time, error) {
	return s.m.SetPINVersions(ctx)
}

func (s *Serving) SetPINDecryptPKCS1(ctx context.Context, version uint32, ciphertext []byte) ([]byte, error) {
	return s.m.SetPINDecryptPKCS1(ctx, version, ciphertext)
}

func (s *Serving) SetPINDecryptOAEP(ctx context.Context, version uint32, ciphertext []byte) ([]byte, error) {
	return s.m.SetPINDecryptOAEP(ctx, version, ciphertext)
}

func (s *Serving) PEKEncryptBlock(ctx context.Context, version uint32, block []byte) ([]byte, uint32, error) {
	return s.m.PEKEncryptBlock(ctx, version, block)
}

func (s *Serving) PINDigits(ctx context.Context, version uint32, block, pan []byte) ([]byte, error) {
	return s.m.PINDigits(ctx, version, block, pan)
}

func (s *Serving) ZonePINDigits(ctx context.Context, version uint32, block, pan []byte) ([]byte, uint32, error) {
	return s.m.ZonePINDigits(ctx, version, block, pan)
}

// AuditMAC and AuditMACWithVersion checkpoint the audit chains.
func (s *Serving) AuditMAC(ctx context.Context, msg []byte) ([]byte, uint32, error) {
	return s.m.AuditMAC(ctx, msg)
}

func (s *Serving) AuditMACWithVersion(ctx context.Context, version uint32, msg []byte) ([]byte, error) {
	return s.m.AuditMACWithVersion(ctx, version, msg)
}

// What readiness, logs and metrics read of the token.

func (s *Serving) Probe(ctx context.Context) error              { return s.m.Probe(ctx) }
func (s *Serving) SealRoundTrip(ctx context.Context) error      { return s.m.SealRoundTrip(ctx) }
func (s *Serving) RequireKeys(ctx context.Context) error        { return s.m.RequireKeys(ctx) }
func (s *Serving) KeyRefresh() time.Duration                    { return s.m.KeyRefresh() }
func (s *Serving) Rejections() []Rejection                      { return s.m.Rejections() }
func (s *Serving) Limitations() []string                        { return s.m.Limitations() }
func (s *Serving) Label() string                                { return s.m.Label() }
func (s *Serving) Token(ctx context.Context) (TokenInfo, error) { return s.m.Token(ctx) }
func (s *Serving) Reconnects() int64                            { return s.m.Reconnects() }
func (s *Serving) SlotsInUse() int                              { return s.m.SlotsInUse() }
func (s *Serving) Slots() int                                   { return s.m.Slots() }
func (s *Serving) SetObserver(o Observer)                       { s.m.SetObserver(o) }
func (s *Serving) ActiveVersion(ctx context.Context, p Purpose) (uint32, error) {
	return s.m.ActiveVersion(ctx, p)
}

// Close closes the token connection.
func (s *Serving) Close() { s.m.Close() }
