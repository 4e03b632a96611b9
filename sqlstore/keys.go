package sqlstore

import (
	"context"
	"database/sql"
	"time"

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
	rows, err := s.db.QueryContext(ctx, `SELECT token, label, purpose, version, check_value, digest, origin, extractable, ceremony, recorded_at, end_date FROM key_catalog ORDER BY token, label`)
	if err != nil {
		return nil, s.fail(err)
	}
	defer rows.Close()
	var out []vault.KeyRecord
	for rows.Next() {
		var r vault.KeyRecord
		var version, extractable, at int64
		var end sql.NullInt64
		if err := rows.Scan(&r.Token, &r.Label, &r.Purpose, &version, &r.Check, &r.Digest, &r.Origin, &extractable, &r.Ceremony, &at, &end); err != nil {
			return nil, s.fail(err)
		}
		r.Version, r.Extractable, r.RecordedAt = uint32(version), extractable == 1, fromMicros(at)
		if end.Valid {
			r.EndDate = fromMicros(end.Int64)
		}
		out = append(out, r)
	}
	return out, s.fail(rows.Err())
}

// SetKeyEndDate records the last day clients may encrypt to a key pair's
// version.
func (s *Store) SetKeyEndDate(ctx context.Context, token, label string, day time.Time) error {
	y, m, d := day.UTC().Date()
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE key_catalog SET end_date = ? WHERE token = ? AND label = ?`),
		micros(time.Date(y, m, d, 0, 0, 0, 0, time.UTC)), token, label)
	if err != nil {
		return s.fail(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return vault.ErrNotFound
	}
	return nil
}
