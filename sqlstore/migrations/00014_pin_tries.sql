-- +goose Up
-- PIN verification's try counter: wrong PINs verified since the PIN was
-- set or last verified right. At the issuer's limit the card answers
-- blocked until a new PIN is set, which clears it.
ALTER TABLE cards ADD COLUMN pin_tries INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE cards DROP COLUMN pin_tries;
