-- SSH key pairs, and the key an instance was launched with (a copy: deleting the
-- key pair later does not change what the instance was given).

CREATE TABLE key_pairs (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts (id),
    name         TEXT NOT NULL,
    key_type     TEXT NOT NULL,
    public_key   TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX key_pairs_account_name ON key_pairs (account_id, name);

ALTER TABLE instances ADD COLUMN key_name TEXT;
ALTER TABLE instances ADD COLUMN ssh_public_key TEXT;
