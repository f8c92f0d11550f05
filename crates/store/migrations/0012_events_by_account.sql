-- An account's events in the order they happened, read without a sort: event
-- ids begin with their time, then a sequence. Billing reads whole months of
-- an account's events this way.

CREATE INDEX events_account_id ON events (account_id, id);
