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
	Label   string // "purpose/vN"
	Purpose string
	Version uint32
	// Check is a secret key's KCV, or "sha256:" and the SPKI fingerprint
	// of both halves of a key pair.
	Check string
	// Origin is KeyGenerated (made inside the token, CKA_LOCAL) or
	// KeyImported (from components or a backup).
	Origin string
	// Extractable is the export policy the ceremony chose.
	Extractable bool
	Ceremony    string // the ceremony and its transcript
	RecordedAt  time.Time
}

// Key origins.
const (
	KeyGenerated = "generated"
	KeyImported  = "imported"
)

// KeyCatalog keeps the ceremonies' key records.
type KeyCatalog interface {
	// RecordKey adds a record; a label recorded before is a conflict
	// naming "label".
	RecordKey(ctx context.Context, r KeyRecord) error
	// KeyRecords returns every record.
	KeyRecords(ctx context.Context) ([]KeyRecord, error)
}
