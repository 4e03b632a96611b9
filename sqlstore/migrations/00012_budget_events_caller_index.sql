-- +goose Up
-- Caller budgets count in buckets (00010, budget_caller_buckets): nothing
-- reads budget_events by caller any more, and every reveal paid for
-- keeping this index. The caller column stays, for forensics.
DROP INDEX budget_events_caller;

-- +goose Down
CREATE INDEX budget_events_caller ON budget_events (kind, caller, at);
