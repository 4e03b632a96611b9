package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/cardvault/cardvault/vault"
)

const deviceColumns = `id, person_id, name, status, unrestricted_key, restricted_key, created_at, verified_at, deleted_at`

func scanDevice(r scanner) (*vault.Device, error) {
	var d vault.Device
	var status string
	var created int64
	var verified, deleted sql.NullInt64
	if err := r.Scan(&d.ID, &d.PersonID, &d.Name, &status, &d.UnrestrictedKey, &d.RestrictedKey, &created, &verified, &deleted); err != nil {
		return nil, err
	}
	d.Status = vault.DeviceStatus(status)
	d.CreatedAt = fromMicros(created)
	d.VerifiedAt = optionalTime(verified)
	d.DeletedAt = optionalTime(deleted)
	return &d, nil
}

func optionalTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

func nullMicros(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: micros(*t), Valid: true}
}

// liveDevice selects devices that hold a place: verified ones, and pending
// ones whose registration challenge is still open. Its parameters are the
// two statuses and the time.
const liveDevice = `(status = ? OR (status = ? AND EXISTS (SELECT 1 FROM device_challenges ch
	WHERE ch.device_id = devices.id AND ch.used_at IS NULL AND ch.expires_at > ?)))`

// CreateDevice inserts a pending device and its first challenge, within
// the person's device limit.
func (s *Store) CreateDevice(ctx context.Context, d *vault.Device, ch *vault.Challenge, limit int, w vault.Write) error {
	return s.inTx(ctx, func(tx *txn) error {
		if err := s.serialize(ctx, tx, "devices:"+d.PersonID); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM devices WHERE person_id = ? AND `+liveDevice),
			d.PersonID, string(vault.DeviceVerified), string(vault.DevicePending), micros(d.CreatedAt)).Scan(&n); err != nil {
			return err
		}
		if n >= limit {
			return vault.Conflict("person_id", fmt.Sprintf("already has %d devices; delete one first", limit))
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO devices (`+deviceColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			d.ID, d.PersonID, d.Name, string(d.Status), d.UnrestrictedKey, d.RestrictedKey, micros(d.CreatedAt),
			nullMicros(d.VerifiedAt), nullMicros(d.DeletedAt)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO device_challenges (id, device_id, purpose, string_to_sign, created_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?, ?, NULL)`),
			ch.ID, ch.DeviceID, string(ch.Purpose), ch.StringToSign, micros(ch.CreatedAt), micros(ch.ExpiresAt)); err != nil {
			return err
		}
		return s.applyWrite(ctx, tx, "", w)
	})
}

// Device returns a device that is not deleted.
func (s *Store) Device(ctx context.Context, id string) (*vault.Device, error) {
	d, err := scanDevice(s.queryRow(ctx, s.q(`SELECT `+deviceColumns+` FROM devices WHERE id = ? AND status <> ?`), id, string(vault.DeviceDeleted)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, vault.ErrNotFound
	}
	return d, s.fail(err)
}

// ListDevices returns a person's live devices.
func (s *Store) ListDevices(ctx context.Context, personID string, at time.Time) ([]*vault.Device, error) {
	rows, err := s.query(ctx, s.q(`SELECT `+deviceColumns+` FROM devices WHERE person_id = ? AND `+liveDevice+` ORDER BY id`),
		personID, string(vault.DeviceVerified), string(vault.DevicePending), micros(at))
	if err != nil {
		return nil, s.fail(err)
	}
	defer rows.Close()
	out := []*vault.Device{}
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, s.fail(err)
		}
		out = append(out, d)
	}
	return out, s.fail(rows.Err())
}

// Challenge returns a challenge.
func (s *Store) Challenge(ctx context.Context, id string) (*vault.Challenge, error) {
	var ch vault.Challenge
	var purpose string
	var created, expires int64
	var used sql.NullInt64
	err := s.queryRow(ctx, s.q(`SELECT id, device_id, purpose, string_to_sign, created_at, expires_at, used_at FROM device_challenges WHERE id = ?`), id).
		Scan(&ch.ID, &ch.DeviceID, &purpose, &ch.StringToSign, &created, &expires, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, vault.ErrNotFound
	}
	if err != nil {
		return nil, s.fail(err)
	}
	ch.Purpose = vault.KeyPurpose(purpose)
	ch.CreatedAt, ch.ExpiresAt, ch.UsedAt = fromMicros(created), fromMicros(expires), optionalTime(used)
	return &ch, nil
}

// AnswerChallenge marks a challenge used and verifies its device. The
// guards in the WHERE clauses make a concurrent answer or delete lose
// cleanly.
func (s *Store) AnswerChallenge(ctx context.Context, challengeID string, at time.Time, w vault.Write) error {
	return s.inTx(ctx, func(tx *txn) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE device_challenges SET used_at = ? WHERE id = ? AND used_at IS NULL AND expires_at > ?`),
			micros(at), challengeID, micros(at))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return vault.Conflict("id", "challenge was already answered or has expired")
		}
		res, err = tx.ExecContext(ctx, s.q(`UPDATE devices SET status = ?, verified_at = COALESCE(verified_at, ?) WHERE id = (SELECT device_id FROM device_challenges WHERE id = ?) AND status <> ?`),
			string(vault.DeviceVerified), micros(at), challengeID, string(vault.DeviceDeleted))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return vault.ErrNotFound
		}
		return s.applyWrite(ctx, tx, "", w)
	})
}

// AddDeviceKey sets a verified device's key for a purpose, once.
func (s *Store) AddDeviceKey(ctx context.Context, deviceID string, p vault.KeyPurpose, key []byte, w vault.Write) error {
	column := "restricted_key"
	if p == vault.KeyUnrestricted {
		column = "unrestricted_key"
	}
	return s.inTx(ctx, func(tx *txn) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE devices SET `+column+` = ? WHERE id = ? AND status = ? AND `+column+` IS NULL`),
			key, deviceID, string(vault.DeviceVerified))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return vault.Conflict("key_purpose", fmt.Sprintf("device already has a %s key, or is no longer verified", p))
		}
		return s.applyWrite(ctx, tx, "", w)
	})
}

// DeleteDevice marks a device deleted.
func (s *Store) DeleteDevice(ctx context.Context, id string, at time.Time, w vault.Write) error {
	return s.inTx(ctx, func(tx *txn) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE devices SET status = ?, deleted_at = ? WHERE id = ? AND status <> ?`),
			string(vault.DeviceDeleted), micros(at), id, string(vault.DeviceDeleted))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return vault.ErrNotFound
		}
		return s.applyWrite(ctx, tx, "", w)
	})
}
