package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/cardvault/cardvault/vault"
)

const orderColumns = `id, owner_id, card_id, status, name_on_card, shipping, created_at, updated_at`

func scanOrder(r scanner) (*vault.Order, error) {
	var o vault.Order
	var card sql.NullString
	var status, shipping string
	var created, updated int64
	if err := r.Scan(&o.ID, &o.OwnerID, &card, &status, &o.NameOnCard, &shipping, &created, &updated); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(shipping), &o.Shipping); err != nil {
		return nil, err
	}
	o.CardID, o.Status = card.String, vault.OrderStatus(status)
	o.CreatedAt, o.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &o, nil
}

// CreateOrder inserts an order with its Write.
func (s *Store) CreateOrder(ctx context.Context, o *vault.Order, w vault.Write) error {
	shipping, err := json.Marshal(o.Shipping)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *txn) error {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO card_orders (`+orderColumns+`) VALUES (?, ?, NULL, ?, ?, ?, ?, ?)`),
			o.ID, o.OwnerID, string(o.Status), o.NameOnCard, string(shipping), micros(o.CreatedAt), micros(o.UpdatedAt)); err != nil {
			return err
		}
		return s.applyWrite(ctx, tx, "", w)
	})
}

func (s *Store) oneOrder(ctx context.Context, where string, args ...any) (*vault.Order, error) {
	o, err := scanOrder(s.queryRow(ctx, s.q(`SELECT `+orderColumns+` FROM card_orders WHERE `+where), args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, vault.ErrNotFound
	}
	return o, s.fail(err)
}

// Order returns an owner's order.
func (s *Store) Order(ctx context.Context, ownerID, id string) (*vault.Order, error) {
	return s.oneOrder(ctx, `id = ? AND owner_id = ?`, id, ownerID)
}

// OrderByID returns an order whoever owns it.
func (s *Store) OrderByID(ctx context.Context, id string) (*vault.Order, error) {
	return s.oneOrder(ctx, `id = ?`, id)
}

// OrderByCard returns the order that made a card.
func (s *Store) OrderByCard(ctx context.Context, cardID string) (*vault.Order, error) {
	return s.oneOrder(ctx, `card_id = ?`, cardID)
}

// ListOrders returns an owner's orders, oldest first.
func (s *Store) ListOrders(ctx context.Context, ownerID string) ([]*vault.Order, error) {
	rows, err := s.query(ctx, s.q(`SELECT `+orderColumns+` FROM card_orders WHERE owner_id = ? ORDER BY id`), ownerID)
	if err != nil {
		return nil, s.fail(err)
	}
	defer rows.Close()
	out := []*vault.Order{}
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			return nil, s.fail(err)
		}
		out = append(out, o)
	}
	return out, s.fail(rows.Err())
}

// moveOrder applies an order's move. The status guard makes a concurrent
// or repeated move lose cleanly: an order never skips or goes back.
func (s *Store) moveOrder(ctx context.Context, tx *txn, m *vault.OrderMove) error {
	res, err := tx.ExecContext(ctx, s.q(`UPDATE card_orders SET status = ?, card_id = COALESCE(card_id, NULLIF(?, '')), updated_at = ? WHERE id = ? AND status = ?`),
		string(m.To), m.CardID, micros(m.At), m.OrderID, string(m.From))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return vault.Conflict("status", "order changed concurrently")
	}
	return nil
}

// SetPIN stores a card's PIN block and opens a NOT_ACTIVATED card.
func (s *Store) SetPIN(ctx context.Context, cardID string, block []byte, pekVersion uint32, at time.Time, w vault.Write) error {
	return s.inTx(ctx, func(tx *txn) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE cards SET pin_block = ?, pin_key_version = ?, pin_set_at = ?, updated_at = ?, pin_tries = 0,
			status = CASE WHEN status = ? THEN ? ELSE status END WHERE id = ? AND status <> ?`),
			block, int64(pekVersion), micros(at), micros(at), string(vault.StatusNotActivated), string(vault.StatusOpen), cardID, string(vault.StatusClosed))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return vault.Conflict("card_id", "card is closed")
		}
		return s.applyWrite(ctx, tx, cardID, w)
	})
}
