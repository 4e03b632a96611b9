-- A caller's budget counts distinct cards. Counting them from
-- budget_events scanned every event of the caller's window, on the write
-- path, so each reveal cost more the busier the caller was (issue 18: the
-- reveals capped near 650 req/s whatever their crypto cost). One row per
-- caller and card, holding the card's last event, keeps the count to the
-- cards in the window, which the budget itself bounds.

-- +goose Up
CREATE TABLE budget_caller_cards (
    kind    TEXT NOT NULL,
    caller  TEXT NOT NULL,
    card_id TEXT NOT NULL,
    last_at BIGINT NOT NULL,
    PRIMARY KEY (kind, caller, card_id)
);
CREATE INDEX budget_caller_cards_window ON budget_caller_cards (kind, caller, last_at);
CREATE INDEX budget_caller_cards_at ON budget_caller_cards (kind, last_at);
INSERT INTO budget_caller_cards (kind, caller, card_id, last_at)
    SELECT kind, caller, card_id, MAX(at) FROM budget_events WHERE caller <> '' GROUP BY kind, caller, card_id;

-- +goose Down
DROP TABLE budget_caller_cards;
