-- Batches of object storage request counts already recorded as events, so
-- that a batch is recorded once even if the region stops before removing it.

CREATE TABLE usage_batches (
    name        TEXT PRIMARY KEY,
    recorded_at BIGINT NOT NULL
);
