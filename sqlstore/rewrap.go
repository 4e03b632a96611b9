package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/cardvault/cardvault/vault"
)

var _ vault.RewrapStore = (*Store)(nil)

// KeyUse counts records per key version.
func (s *Store) KeyUse(ctx context.Context) (vault.KeyUse, error) {
	use := vault.KeyUse{}
	var err error
	for _, q := range []struct {
		into  *map[uint32]int
		query string
	}{
		{&use.CardKEK, `SELECT key_version, COUNT(*) FROM cards WHERE sealed IS NOT NULL GROUP BY key_version`},
		{&use.PANHMAC, `SELECT fp_version, COUNT(*) FROM cards WHERE sealed IS NOT NULL GROUP BY fp_version`},
		{&use.PEK, `SELECT pin_key_version, COUNT(*) FROM cards WHERE pin_block IS NOT NULL GROUP BY pin_key_version`},
	} {
		if *q.into, err = s.countByVersion(ctx, q.query); err != nil {
			return use, s.fail(err)
		}
	}
	return use, nil
}

func (s *Store) countByVersion(ctx context.Context, query string) (map[uint32]int, error) {
	rows, err := s.db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[uint32]int{}
	for rows.Next() {
		var v int64
		var n int
		if err := rows.Scan(&v, &n); err != nil {
			return nil, err
		}
		out[uint32(v)] = n
	}
	return out, rows.Err()
}

// stale selects open cards with anything under other than the target
// versions; its three placeholders take them in KeyVersions order.
const stale = `sealed IS NOT NULL AND (key_version <> ? OR fp_version <> ? OR (pin_block IS NOT NULL AND pin_key_version <> ?))`

func targetArgs(t vault.KeyVersions) []any {
	return []any{int64(t.CardKEK), int64(t.PANHMAC), int64(t.PEK)}
}

// CountStale counts open cards with anything under an old version.
func (s *Store) CountStale(ctx context.Context, target vault.KeyVersions) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM cards WHERE `+stale), targetArgs(target)...).Scan(&n)
	return n, s.fail(err)
}

// StaleCards lists stale cards in id order after the cursor.
func (s *Store) StaleCards(ctx context.Context, target vault.KeyVersions, after string, limit int) ([]*vault.Card, error) {
	args := append(targetArgs(target), after, limit)
	return s.queryCards(ctx, stale+` AND id > ? ORDER BY id LIMIT ?`, args...)
}

// ApplyRewrap stores the moves whose cards are unchanged since they were
// read, with w, in one transaction. A move whose new fingerprint another
// card already has (the same PAN imported twice across a pan-hmac
// rotation) is left out rather than failing the batch.
func (s *Store) ApplyRewrap(ctx context.Context, moves []vault.Rewrapped, w vault.Write) (int, error) {
	var n int
	err := s.inTx(ctx, func(tx *txn) error {
		n = 0
		for _, m := range moves {
			if m.FPVersion != m.Old.FPVersion {
				var other string
				err := tx.QueryRowContext(ctx, s.q(`SELECT id FROM cards WHERE fingerprint = ? AND id <> ?`), m.Fingerprint, m.Old.ID).Scan(&other)
				if err == nil {
					continue
				}
				if !errors.Is(err, sql.ErrNoRows) {
					return err
				}
			}
			// The guard compares every field the move read, so a card
			// closed, re-PINned or moved by another run meanwhile is
			// left as the other writer made it.
			pinGuard, args := `pin_block IS NULL`, []any{}
			if m.Old.PINBlock != nil {
				pinGuard, args = `pin_block = ?`, []any{m.Old.PINBlock}
			}
			var pinVersion any
			if m.PINBlock != nil {
				pinVersion = int64(m.PINKeyVersion)
			}
			res, err := tx.ExecContext(ctx, s.q(`UPDATE cards SET sealed = ?, key_version = ?, fingerprint = ?, fp_version = ?, pin_block = ?, pin_key_version = COALESCE(?, pin_key_version)
				WHERE id = ? AND sealed = ? AND fingerprint = ? AND `+pinGuard),
				append([]any{m.Sealed, int64(m.KeyVersion), m.Fingerprint, int64(m.FPVersion), m.PINBlock, pinVersion,
					m.Old.ID, m.Old.Sealed, m.Old.Fingerprint}, args...)...)
			if err != nil {
				return err
			}
			changed, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += int(changed)
		}
		return s.applyWrite(ctx, tx, "", w)
	})
	return n, err
}
