-- +goose Up
-- The officers who approve ceremonies, one row per officer per roster
-- version; the highest version is the roster in force.
CREATE TABLE rosters (
    version     INTEGER PRIMARY KEY,
    quorum      INTEGER NOT NULL,
    plan_sha256 TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE TABLE officers (
    roster      INTEGER NOT NULL REFERENCES rosters (version),
    name        TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (roster, name)
);
-- A plan runs once, and a signature approves once: neither can be
-- replayed to run a ceremony a second time.
CREATE TABLE ceremony_plans (
    plan_sha256 TEXT PRIMARY KEY,
    ceremony    TEXT NOT NULL,
    claimed_at  BIGINT NOT NULL
);
CREATE TABLE ceremony_approvals (
    signature_sha256 TEXT PRIMARY KEY,
    plan_sha256      TEXT NOT NULL REFERENCES ceremony_plans (plan_sha256),
    officer          TEXT NOT NULL,
    fingerprint      TEXT NOT NULL
);

-- +goose Down
DROP TABLE ceremony_approvals;
DROP TABLE ceremony_plans;
DROP TABLE officers;
DROP TABLE rosters;
