package sqlstore

import (
	"context"

	"github.com/cardvault/cardvault/vault"
)

var _ vault.KeyCatalog = (*Store)(nil)

// RecordKey adds a ceremony's key record.
func (s *Store) RecordKey(ctx context.Context, r vault.KeyRecord) error {
	extractable := 0
	if r.Extractable {
		extractable = 1
	}
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO key_catalog (token, label, purpose, version, check_value, digest, origin, extractable, ceremony, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		r.Token, r.Label, r.Purpose, int64(r.Version), r.Check, r.Digest, r.Origin, extractable, r.Ceremony, micros(r.RecordedAt))
	if s.d.isUnique(err) {
		return vault.Conflict("label", r.Label+" is recorded already")
	}
	return s.fail(err)
}

// KeyRecords returns every key record, of every token.
func (s *Store) KeyRecords(ctx context.Context) ([]vault.KeyRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT token, label, purpose, version, check_value, digest, origin, extractable, ceremony, recorded_at FROM key_catalog ORDER BY token, label`)
	if err != nil {
		return nil, s.fail(err)
	}
	defer rows.Close()
	var out []vault.KeyRecord
	for rows.Next() {
		var r vault.KeyRecord
		var version, extractable, at int64
		if err := rows.Scan(&r.Token, &r.Label, &r.Purpose, &version, &r.Check, &r.Digest, &r.Origin, &extractable, &r.Ceremony, &at); err != nil {
			return nil, s.fail(err)
		}
		r.Version, r.Extractable, r.RecordedAt = uint32(version), extractable == 1, fromMicros(at)
		out = append(out, r)
	}
	return out, s.fail(rows.Err())
}
