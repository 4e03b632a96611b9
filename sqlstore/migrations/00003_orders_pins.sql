-- Physical card orders, and PIN blocks on cards.

-- +goose Up
CREATE TABLE card_orders (
    id           TEXT PRIMARY KEY,
    owner_id     TEXT NOT NULL,
    card_id      TEXT,
    status       TEXT NOT NULL,
    name_on_card TEXT NOT NULL,
    shipping     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX card_orders_owner ON card_orders (owner_id, id);
CREATE UNIQUE INDEX card_orders_card ON card_orders (card_id);

-- An ISO 9564-1 format 4 PIN block under the PEK version beside it.
ALTER TABLE cards ADD COLUMN pin_block BYTEA;
ALTER TABLE cards ADD COLUMN pin_key_version BIGINT;
ALTER TABLE cards ADD COLUMN pin_set_at BIGINT;

-- +goose Down
ALTER TABLE cards DROP COLUMN pin_set_at;
ALTER TABLE cards DROP COLUMN pin_key_version;
ALTER TABLE cards DROP COLUMN pin_block;
DROP TABLE card_orders;
