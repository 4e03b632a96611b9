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

-- One row per budgeted event (a reveal, a PIN attempt) inside its
-- window; each new event prunes the rows of its kind that left it.
CREATE TABLE budget_events (
    id        TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    at        BIGINT NOT NULL,
    card_id   TEXT NOT NULL,
    device_id TEXT NOT NULL
);
CREATE INDEX budget_events_card ON budget_events (kind, card_id, at);
CREATE INDEX budget_events_device ON budget_events (kind, device_id, at);
CREATE INDEX budget_events_at ON budget_events (kind, at);

-- +goose Down
DROP TABLE budget_events;
DROP TABLE device_challenges;
DROP TABLE devices;
