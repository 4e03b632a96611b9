-- Device binding for the secure view, and reveal budgets.

-- +goose Up
CREATE TABLE devices (
    id               TEXT PRIMARY KEY,
    person_id        TEXT NOT NULL,
    name             TEXT NOT NULL,
    status           TEXT NOT NULL,
    unrestricted_key BYTEA,
    restricted_key   BYTEA,
    created_at       BIGINT NOT NULL,
    verified_at      BIGINT,
    deleted_at       BIGINT
);
CREATE INDEX devices_person ON devices (person_id, id);

CREATE TABLE device_challenges (
    id             TEXT PRIMARY KEY,
    device_id      TEXT NOT NULL REFERENCES devices (id),
    purpose        TEXT NOT NULL,
    string_to_sign TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT
);

-- One row per reveal inside the budget window; each new reveal prunes
-- the rows that left it.
CREATE TABLE reveals (
    id        TEXT PRIMARY KEY,
    at        BIGINT NOT NULL,
    card_id   TEXT NOT NULL,
    device_id TEXT NOT NULL
);
CREATE INDEX reveals_card ON reveals (card_id, at);
CREATE INDEX reveals_device ON reveals (device_id, at);
CREATE INDEX reveals_at ON reveals (at);

-- +goose Down
DROP TABLE reveals;
DROP TABLE device_challenges;
DROP TABLE devices;
