package keyceremony

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"slices"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/vault"
)

// Prover is what proving a new key needs of the token: one round trip of
// each purpose's operation. *hsm.Module has it.
type Prover interface {
	SealWithVersion(ctx context.Context, version uint32, aad, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, aad, sealed []byte) ([]byte, error)
	EncryptBlock(ctx context.Context, version uint32, block []byte) ([]byte, error)
	DecryptBlock(ctx context.Context, version uint32, block []byte) ([]byte, error)
	ZonePINDecryptBlock(ctx context.Context, version uint32, block []byte) ([]byte, error)
	MACWithVersion(ctx context.Context, p hsm.Purpose, version uint32, data []byte) ([]byte, error)
	PublicKey(ctx context.Context, version uint32) (*rsa.PublicKey, error)
	DecryptRSA(ctx context.Context, version uint32, pad hsm.RSAPadding, ciphertext []byte) ([]byte, error)
}

// VerifyKey proves a new key version works with a round trip of its
// purpose before a ceremony records it: seal then open (card KEK), a
// block enciphered, changed and deciphered back (PEK), a deterministic
// 32-byte MAC (PAN HMAC, audit), and for set_pin a 4096-bit key with
// e = 65537 that decrypts what was encrypted to its public half.
func VerifyKey(ctx context.Context, m Prover, p hsm.Purpose, version uint32) error {
	probe := []byte("cardvault ceremony round trip")
	switch p {
	case hsm.CardKEK:
		sealed, err := m.SealWithVersion(ctx, version, probe, probe)
		if err != nil {
			return err
		}
		got, err := m.Open(ctx, probe, sealed)
		if err != nil || !bytes.Equal(got, probe) {
			return fmt.Errorf("seal/open round trip: %v", err)
		}
	case hsm.PEK:
		block := probe[:16]
		enc, err := m.EncryptBlock(ctx, version, block)
		if err != nil {
			return err
		}
		dec, err := m.DecryptBlock(ctx, version, enc)
		if err != nil || !bytes.Equal(dec, block) || bytes.Equal(enc, block) {
			return fmt.Errorf("block round trip: %v", err)
		}
	case hsm.ZonePIN:
		// It only deciphers: the same block twice, to the same other
		// block. Its value is proven by its KCV, which the import
		// compares with the value's.
		a, err := m.ZonePINDecryptBlock(ctx, version, probe[:16])
		if err != nil {
			return err
		}
		b, err := m.ZonePINDecryptBlock(ctx, version, probe[:16])
		if err != nil || !bytes.Equal(a, b) || bytes.Equal(a, probe[:16]) {
			return fmt.Errorf("block decryption is not deterministic: %v", err)
		}
	case hsm.PANHMAC, hsm.Audit:
		a, err := m.MACWithVersion(ctx, p, version, probe)
		if err != nil {
			return err
		}
		b, err := m.MACWithVersion(ctx, p, version, probe)
		if err != nil || !bytes.Equal(a, b) || len(a) != 32 {
			return fmt.Errorf("HMAC is not deterministic: %v", err)
		}
	case hsm.SetPIN:
		pub, err := m.PublicKey(ctx, version)
		if err != nil {
			return err
		}
		if pub.N.BitLen() != 4096 || pub.E != 65537 {
			return fmt.Errorf("public key is %d bits, e=%d", pub.N.BitLen(), pub.E)
		}
		ct, err := rsa.EncryptPKCS1v15(rand.Reader, pub, probe)
		if err != nil {
			return err
		}
		got, err := m.DecryptRSA(ctx, version, hsm.PKCS1v15, ct)
		if err != nil || !bytes.Equal(got, probe) {
			return fmt.Errorf("encrypt/decrypt round trip: %v", err)
		}
	default:
		return fmt.Errorf("no proof for purpose %q", p)
	}
	return nil
}

// ExportPolicy says how a key can leave the token.
func ExportPolicy(k hsm.KeyInfo) string {
	switch {
	case k.Class == "public":
		return "public"
	case !k.Extractable:
		return "never"
	case k.WrapWithTrusted:
		return "trusted-wrap"
	}
	return "WRAPPABLE" // made outside the vault's templates: look into it
}

// KeyLister lists the token's key objects. *hsm.Module has it.
type KeyLister interface {
	Keys(ctx context.Context) ([]hsm.KeyInfo, error)
}

// UseCounter counts what the database holds under each key version.
// *sqlstore.Store has it.
type UseCounter interface {
	KeyUse(ctx context.Context) (vault.KeyUse, error)
	CheckpointsUnder(ctx context.Context, version uint32) (int, error)
}

// VersionInUse is the retire rule: how many things still need a key
// version, and what they are. Records sealed, fingerprinted or PIN-blocked
// under it (rewrap first); audit checkpoints MACed under it (verification
// needs it); a set_pin version inside its grace period (clients may still
// encrypt to it through its end date, by now's UTC day). Zero means it may
// go.
func VersionInUse(ctx context.Context, keys KeyLister, store UseCounter, p hsm.Purpose, version uint32, now time.Time) (int, string, error) {
	switch p {
	case hsm.CardKEK, hsm.PANHMAC, hsm.PEK:
		use, err := store.KeyUse(ctx)
		if err != nil {
			return 0, "", err
		}
		counts := map[hsm.Purpose]map[uint32]int{hsm.CardKEK: use.CardKEK, hsm.PANHMAC: use.PANHMAC, hsm.PEK: use.PEK}
		return counts[p][version], "record(s) still use it; run ceremony rewrap first", nil
	case hsm.Audit:
		n, err := store.CheckpointsUnder(ctx, version)
		return n, "audit checkpoint(s) are MACed under it; audit verify needs it", err
	case hsm.SetPIN:
		infos, err := keys.Keys(ctx)
		if err != nil {
			return 0, "", err
		}
		today := now.UTC().Truncate(24 * time.Hour)
		for _, k := range infos {
			if k.Purpose == p && k.Version == version && k.Class == "public" && !k.EndDate.IsZero() && !k.EndDate.Before(today) {
				return 1, fmt.Sprintf("grace period: clients may encrypt PINs to it through %s", k.EndDate.Format(time.DateOnly)), nil
			}
		}
	}
	return 0, "", nil
}

// SeenByServers is when every server can have seen the versions named by
// labels, as recorded for token: the latest of their records plus two
// key refresh intervals (a server trusts its view for one interval, and
// its last refresh may have begun just before the record). A ceremony that
// writes records under a new version waits for it, as retire waits before
// it counts, so that no server is still sealing under the version before.
func SeenByServers(records []vault.KeyRecord, token string, labels []string, refresh time.Duration) time.Time {
	var latest time.Time
	for _, r := range records {
		if r.Token == token && slices.Contains(labels, r.Label) && r.RecordedAt.After(latest) {
			latest = r.RecordedAt
		}
	}
	if latest.IsZero() {
		return latest
	}
	return latest.Add(2 * refresh)
}
