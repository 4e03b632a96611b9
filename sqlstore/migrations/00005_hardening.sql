-- Hardening after the hostile review (issue 15): per-caller budgets,
-- idempotency records that hold no unkeyed hash of card data and go with
-- their card, and the key catalog ceremonies pin.

-- +goose Up
ALTER TABLE budget_events ADD COLUMN caller TEXT NOT NULL DEFAULT '';
CREATE INDEX budget_events_caller ON budget_events (kind, caller, at);

-- Records written before this migration hold an unkeyed SHA-256 of the
-- request body (PAN, CVV and expiry for imports): drop them. A client
-- retrying across the upgrade gets a fresh answer, as after the window.
DELETE FROM idempotency;
ALTER TABLE idempotency ADD COLUMN card_id TEXT NOT NULL DEFAULT '';
CREATE INDEX idempotency_card ON idempotency (card_id);
CREATE INDEX idempotency_created ON idempotency (created_at);

-- Every key version a ceremony made or imported in a token (by serial),
-- with what it must look like there. The server uses no object that is
-- not here. digest is the full-length check (a whole CMAC or HMAC of a
-- zero block, or the SPKI SHA-256), which no one can grind a key to
-- match as they could the three-byte KCV.
CREATE TABLE key_catalog (
    token       TEXT NOT NULL,
    label       TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    version     BIGINT NOT NULL,
    check_value TEXT NOT NULL,
    digest      TEXT NOT NULL,
    origin      TEXT NOT NULL,
    extractable INTEGER NOT NULL,
    ceremony    TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (token, label)
);

-- +goose Down
DROP TABLE key_catalog;
DROP INDEX idempotency_created;
DROP INDEX idempotency_card;
ALTER TABLE idempotency DROP COLUMN card_id;
DROP INDEX budget_events_caller;
ALTER TABLE budget_events DROP COLUMN caller;
