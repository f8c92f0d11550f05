-- Billing: commitments bought, budgets and the alerts they raised, and the
-- invoices of closed months. Usage itself is never stored: it is derived from
-- the event log.

CREATE TABLE commitments (
    id             TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL REFERENCES accounts (id),
    per_hour_nanos BIGINT NOT NULL,
    term           TEXT NOT NULL,
    discount_bp    BIGINT NOT NULL,
    starts_at      BIGINT NOT NULL,
    ends_at        BIGINT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX commitments_account ON commitments (account_id, starts_at);

CREATE TABLE budgets (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    name          TEXT NOT NULL,
    monthly_nanos BIGINT NOT NULL,
    -- JSON array of percentages of the monthly amount.
    alert_at      TEXT NOT NULL,
    webhook_url   TEXT,
    created_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX budgets_account_name ON budgets (account_id, name);

-- One row per threshold crossed per month: the row is what makes an alert
-- fire once. It outlives its budget, as the alert's record.
CREATE TABLE budget_alerts (
    budget_id    TEXT NOT NULL,
    month        TEXT NOT NULL,
    threshold    BIGINT NOT NULL,
    account_id   TEXT NOT NULL REFERENCES accounts (id),
    budget_name  TEXT NOT NULL,
    at           BIGINT NOT NULL,
    amount_nanos BIGINT NOT NULL,
    budget_nanos BIGINT NOT NULL,
    webhook_url  TEXT,
    delivered_at BIGINT,
    attempts     BIGINT NOT NULL DEFAULT 0,
    last_error   TEXT,
    PRIMARY KEY (budget_id, month, threshold)
);
CREATE INDEX budget_alerts_account ON budget_alerts (account_id, at);

-- A closed month's invoice, never changed once written.
CREATE TABLE invoices (
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    month       TEXT NOT NULL,
    total_nanos BIGINT NOT NULL,
    body        TEXT NOT NULL,
    closed_at   BIGINT NOT NULL,
    PRIMARY KEY (account_id, month)
);
