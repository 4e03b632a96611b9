-- A caller's budget counted its distinct cards by reading every card of
-- its window (budget_caller_cards), under a lock every request of the
-- caller shared until commit: an API tier holding one token revealed one
-- card at a time, platform-wide (issue 29). The count now lives in time
-- buckets of a sixtieth of the window: a card is counted in the bucket of
-- its last event (bucket_end, the bucket's exclusive end), so the caller's
-- use is the sum of at most 61 rows, whatever the traffic. A bucket's end
-- is absolute time, so a window changed between restarts still sums
-- correctly.

-- +goose Up
CREATE TABLE budget_caller_buckets (
    kind       TEXT NOT NULL,
    caller     TEXT NOT NULL,
    bucket_end BIGINT NOT NULL,
    n          INTEGER NOT NULL,
    PRIMARY KEY (kind, caller, bucket_end)
);
CREATE INDEX budget_caller_buckets_at ON budget_caller_buckets (kind, bucket_end);
ALTER TABLE budget_caller_cards ADD COLUMN bucket_end BIGINT NOT NULL DEFAULT 0;
-- Rows counted before: each card stays counted exactly until its last
-- event leaves the window, as it was.
UPDATE budget_caller_cards SET bucket_end = last_at;
INSERT INTO budget_caller_buckets (kind, caller, bucket_end, n)
    SELECT kind, caller, bucket_end, COUNT(*) FROM budget_caller_cards GROUP BY kind, caller, bucket_end;
DROP INDEX budget_caller_cards_window;
DROP INDEX budget_caller_cards_at;
CREATE INDEX budget_caller_cards_at ON budget_caller_cards (kind, bucket_end);

-- +goose Down
DROP INDEX budget_caller_cards_at;
CREATE INDEX budget_caller_cards_window ON budget_caller_cards (kind, caller, last_at);
CREATE INDEX budget_caller_cards_at ON budget_caller_cards (kind, last_at);
ALTER TABLE budget_caller_cards DROP COLUMN bucket_end;
DROP TABLE budget_caller_buckets;
