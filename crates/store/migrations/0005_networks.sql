-- Private tenant networks and the addresses their instances hold. An address is
-- kept as its 32-bit number, so that the lowest free one is found by arithmetic.

CREATE TABLE networks (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    name        TEXT NOT NULL,
    cidr        TEXT NOT NULL,
    is_default  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX networks_account_name ON networks (account_id, name);

CREATE TABLE network_addresses (
    network_id   TEXT NOT NULL REFERENCES networks (id),
    address      BIGINT NOT NULL,
    instance_id  TEXT NOT NULL,
    PRIMARY KEY (network_id, address)
);
CREATE UNIQUE INDEX network_addresses_instance ON network_addresses (instance_id);

ALTER TABLE instances ADD COLUMN network_id TEXT;
ALTER TABLE instances ADD COLUMN private_ip TEXT;
