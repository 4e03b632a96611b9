-- The metrics scrape counts ceremony entries in the audit trail, while the
-- trail grows by an entry per reveal: without an index the count scanned
-- the whole table on every scrape. A partial index holds only the
-- ceremony entries, which are few, and the count reads nothing else.

-- +goose Up
CREATE INDEX audit_ceremony ON audit (action, outcome) WHERE action LIKE 'ceremony.%';

-- +goose Down
DROP INDEX audit_ceremony;
