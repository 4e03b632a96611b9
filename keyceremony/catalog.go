package keyceremony

import (
	"context"
	"fmt"
	"time"

	"github.com/cardvault/cardvault/hsm"
	"github.com/cardvault/cardvault/vault"
)

// Admin is what a key-making ceremony needs of the token: the proofs, the
// objects it holds, and making and checking a version. *hsm.Module has
// it; the serving path's handle (hsm.Serving) does not.
type Admin interface {
	Prover
	KeyLister
	Token(ctx context.Context) (hsm.TokenInfo, error)
	ActiveVersion(ctx context.Context, p hsm.Purpose) (uint32, error)
	Generate(ctx context.Context, p hsm.Purpose, version uint32) error
	KCV(ctx context.Context, p hsm.Purpose, version uint32) (hsm.CheckValue, error)
}

// NewVersion makes a purpose's key version, proves it with a round trip
// and records it in the catalog under the ceremony's name. It returns the
// version's check value for the transcript.
func NewVersion(ctx context.Context, tok Admin, catalog vault.KeyCatalog, p hsm.Purpose, version uint32, ceremony string) (string, error) {
	label := hsm.Label(p, version)
	if err := tok.Generate(ctx, p, version); err != nil {
		return "", err
	}
	if err := VerifyKey(ctx, tok, p, version); err != nil {
		return "", fmt.Errorf("%s: created but failed its round trip: %w", label, err)
	}
	if err := RecordKey(ctx, tok, catalog, label, ceremony); err != nil {
		return "", err
	}
	return Check(ctx, tok, p, version)
}

// RecordKey records a key version the ceremony made or imported in the
// key catalog, from what the token shows of it: its check value, origin
// (CKA_LOCAL) and export policy. It refuses a key whose attributes the
// server would reject, naming why. The server uses no key without a
// record. Recording the same key twice (a ceremony run again) is fine;
// another key under a recorded label is refused.
func RecordKey(ctx context.Context, tok Admin, catalog vault.KeyCatalog, label, ceremony string) error {
	info, err := tok.Token(ctx)
	if err != nil {
		return err
	}
	keys, err := tok.Keys(ctx)
	if err != nil {
		return err
	}
	rec, err := recordOf(keys, info.Serial, label, ceremony)
	if err != nil {
		return err
	}
	err = catalog.RecordKey(ctx, *rec)
	if vault.KindOf(err) != vault.KindConflict {
		return err
	}
	records, lerr := catalog.KeyRecords(ctx)
	if lerr != nil {
		return lerr
	}
	for _, r := range records {
		if r.Token == rec.Token && r.Label == label && r.Digest == rec.Digest {
			return nil
		}
	}
	return fmt.Errorf("%s: the catalog records another key under this label for this token: %w", label, err)
}

// recordOf is the catalog record of a label's key object, refused if any
// of the label's objects (a pair has two) has attributes the server would
// reject.
func recordOf(keys []hsm.KeyInfo, serial, label, ceremony string) (*vault.KeyRecord, error) {
	var rec *vault.KeyRecord
	for _, k := range keys {
		if k.Label != label || k.Class == "public" {
			continue
		}
		origin := vault.KeyImported
		if k.Local {
			origin = vault.KeyGenerated
		}
		rec = &vault.KeyRecord{Token: serial, Label: k.Label, Purpose: string(k.Purpose), Version: k.Version, Check: k.Check,
			Digest: k.Digest, Origin: origin, Extractable: k.Extractable, Ceremony: ceremony, RecordedAt: time.Now().UTC()}
	}
	if rec == nil {
		return nil, fmt.Errorf("%s: not in the token", label)
	}
	for _, k := range keys {
		if k.Label != label {
			continue
		}
		if why := hsm.Mismatch(k, *rec); why != "" {
			return nil, fmt.Errorf("%s (%s): the token made it %s; the server would refuse it, so it is not recorded", label, k.Class, why)
		}
	}
	return rec, nil
}

// Check is a key's check value: the KCV of a secret key, or the SHA-256
// fingerprint of the public half of a key pair.
func Check(ctx context.Context, tok Admin, p hsm.Purpose, version uint32) (string, error) {
	if p.Kind() == hsm.KindRSA {
		pub, err := tok.PublicKey(ctx, version)
		if err != nil {
			return "", err
		}
		fp, err := hsm.PublicKeyFingerprint(pub)
		if err != nil {
			return "", err
		}
		return "sha256:" + fp, nil
	}
	kcv, err := tok.KCV(ctx, p, version)
	if err != nil {
		return "", err
	}
	return "KCV " + kcv.String(), nil
}

// BackupFor is the backup of a purpose's next version: the one named, or
// by default the active version's, so that a rotation keeps the choice
// its ceremony init made.
func BackupFor(ctx context.Context, tok Admin, p hsm.Purpose, named string) (hsm.KeyBackup, error) {
	if named != "" {
		return hsm.ParseKeyBackup(named)
	}
	active, err := tok.ActiveVersion(ctx, p)
	if err != nil {
		return hsm.BackupByVendor, nil // no version yet: the default
	}
	keys, err := tok.Keys(ctx)
	if err != nil {
		return 0, err
	}
	for _, k := range keys {
		if k.Purpose == p && k.Version == active && k.Class != "public" && k.Extractable {
			return hsm.BackupByWrap, nil
		}
	}
	return hsm.BackupByVendor, nil
}
