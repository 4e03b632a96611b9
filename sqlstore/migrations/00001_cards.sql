-- Portable between SQLite and PostgreSQL: times are Unix microseconds,
-- binary columns are BYTEA (SQLite stores blobs unchanged under it).

-- +goose Up
CREATE TABLE cards (
    id             TEXT PRIMARY KEY,
    owner_id       TEXT NOT NULL,
    type           TEXT NOT NULL,
    status         TEXT NOT NULL,
    last4          TEXT NOT NULL,
    expiry_month   INTEGER NOT NULL,
    expiry_year    INTEGER NOT NULL,
    name           TEXT NOT NULL,
    fingerprint    BYTEA NOT NULL,
    fp_version     BIGINT NOT NULL,
    sealed         BYTEA,
    key_version    BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    closed_at      BIGINT,
    closure_reason TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX cards_fingerprint ON cards (fingerprint);
CREATE INDEX cards_owner ON cards (owner_id, id);
CREATE INDEX cards_key_version ON cards (key_version);

-- Every client key that ever received card data, by canonical fingerprint.
CREATE TABLE used_client_keys (
    fingerprint BYTEA PRIMARY KEY,
    card_id     TEXT NOT NULL,
    used_at     BIGINT NOT NULL
);

CREATE TABLE idempotency (
    scope        TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    request_hash BYTEA NOT NULL,
    result       BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);

CREATE TABLE audit (
    id         TEXT PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    card_id    TEXT NOT NULL,
    owner_id   TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    request_id TEXT NOT NULL,
    detail     TEXT NOT NULL
);
CREATE INDEX audit_card ON audit (card_id, id);

-- +goose Down
DROP TABLE audit;
DROP TABLE idempotency;
DROP TABLE used_client_keys;
DROP TABLE cards;
