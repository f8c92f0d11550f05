-- Usage rolled up by the day, so that a month's bill reads days, not every
-- event. Each account's mark says up to when its events are rolled up, with
-- the checkpoint (the fewest events that reproduce what each resource held
-- then) that metering goes on from. Quantities are integers that may pass
-- 2^63 (byte-microseconds), so they are kept as decimal text.

CREATE TABLE metering_marks (
    account_id TEXT PRIMARY KEY REFERENCES accounts (id),
    through    BIGINT NOT NULL,
    checkpoint TEXT NOT NULL
);

CREATE TABLE usage_days (
    account_id    TEXT NOT NULL,
    day           BIGINT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    meter         TEXT NOT NULL,
    unit_price    BIGINT NOT NULL,
    quantity      TEXT NOT NULL,
    PRIMARY KEY (account_id, day, resource_id, meter, unit_price)
);

-- Pay-as-you-go compute per hour, which commitments cover, in nanos × 10^6.
CREATE TABLE compute_hours (
    account_id TEXT NOT NULL,
    hour       BIGINT NOT NULL,
    amount     TEXT NOT NULL,
    PRIMARY KEY (account_id, hour)
);
