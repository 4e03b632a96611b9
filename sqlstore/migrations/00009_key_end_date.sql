-- The last day clients may encrypt to a key pair's previous version (the
-- set_pin grace) was read from the public half's CKA_END_DATE, which a
-- session without the user PIN can rewrite. The rotation ceremony now
-- records it here, beside the key's record, and the server reads it from
-- here alone. Microseconds of the day's start, UTC; NULL for none.

-- +goose Up
ALTER TABLE key_catalog ADD COLUMN end_date BIGINT;

-- +goose Down
ALTER TABLE key_catalog DROP COLUMN end_date;
