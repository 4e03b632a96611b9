-- Key lifecycle: the audit trail's hash chains and their checkpoints, and
-- an index for finding PIN blocks by PEK version.

-- +goose Up
-- Rows written before this migration keep NULLs: verify counts them as
-- unchained.
ALTER TABLE audit ADD COLUMN chain TEXT;
ALTER TABLE audit ADD COLUMN seq BIGINT;
ALTER TABLE audit ADD COLUMN prev_hash BYTEA;
ALTER TABLE audit ADD COLUMN hash BYTEA;
CREATE UNIQUE INDEX audit_chain ON audit (chain, seq);

-- A chain's position and hash, MACed by the audit key version beside it.
CREATE TABLE audit_checkpoints (
    chain       TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    hash        BYTEA NOT NULL,
    key_version BIGINT NOT NULL,
    mac         BYTEA NOT NULL,
    at          BIGINT NOT NULL,
    PRIMARY KEY (chain, seq)
);

CREATE INDEX cards_pin_key_version ON cards (pin_key_version);
CREATE INDEX cards_fp_version ON cards (fp_version);

-- +goose Down
DROP INDEX cards_fp_version;
DROP INDEX cards_pin_key_version;
DROP TABLE audit_checkpoints;
DROP INDEX audit_chain;
ALTER TABLE audit DROP COLUMN hash;
ALTER TABLE audit DROP COLUMN prev_hash;
ALTER TABLE audit DROP COLUMN seq;
ALTER TABLE audit DROP COLUMN chain;
