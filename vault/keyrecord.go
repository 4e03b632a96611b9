package vault

import (
	"context"
	"time"
)

// KeyRecord is what a key ceremony recorded about a key version it made or
// imported: the server uses a key object only if it matches its record.
// An object that merely carries a newer label, made with the HSM user PIN
// alone, has no record and is never used.
type KeyRecord struct {
	// Token is the serial number of the token the key is in: a key
	// restored into another token has a record of its own there.
	Token   string
	Label   string // "purpose/vN"
	Purpose string
	Version uint32
	// Check is a secret key's KCV, or "sha256:" and the SPKI fingerprint
	// of both halves of a key pair.
	Check string
	// Digest is the full-length check: the whole CMAC or HMAC of a zero
	// block (the KCV is its first three bytes), or the SPKI SHA-256.
	Digest string
	// Origin is KeyGenerated (made inside the token, CKA_LOCAL) or
	// KeyImported (from components or a backup).
	Origin string
	// Extractable is the export policy the ceremony chose.
	Extractable bool
	Ceremony    string // the ceremony and its transcript
	RecordedAt  time.Time
	// EndDate is the last day (UTC) clients may encrypt to a key pair's
	// public half, set by the rotation that ended it; zero for none. The
	// token's CKA_END_DATE mirrors it but is not trusted: a session
	// without the user PIN can rewrite a public object.
	EndDate time.Time
}

// Key origins.
const (
	KeyGenerated = "generated"
	KeyImported  = "imported"
)

// KeyCatalog keeps the ceremonies' key records.
type KeyCatalog interface {
	// RecordKey adds a record; a label recorded before for the token is a
	// conflict naming "label".
	RecordKey(ctx context.Context, r KeyRecord) error
	// KeyRecords returns every record.
	KeyRecords(ctx context.Context) ([]KeyRecord, error)
	// SetKeyEndDate records a key pair version's last day (UTC); a label
	// not recorded for the token is ErrNotFound.
	SetKeyEndDate(ctx context.Context, token, label string, day time.Time) error
}
