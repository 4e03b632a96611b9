-- Checkpoint MACs were over an unprefixed message (format 1): a chain
-- name could absorb bytes of the position and hash after it, so a
-- checkpoint could be put back under another name with its MAC intact.
-- Format 2 length-prefixes every field. Rows keep the format they were
-- MACed in, so old checkpoints still verify, each by its own rule.

-- +goose Up
ALTER TABLE audit_checkpoints ADD COLUMN format BIGINT NOT NULL DEFAULT 1;

-- +goose Down
ALTER TABLE audit_checkpoints DROP COLUMN format;
