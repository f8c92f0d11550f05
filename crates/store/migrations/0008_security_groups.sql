-- Security groups: stateful firewalls of a network's instances. A rule lets
-- traffic in (ingress) or out (egress) for a protocol and port range, from or
-- to a CIDR or the members of a group; what no rule lets through is dropped.

CREATE TABLE security_groups (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts (id),
    network_id   TEXT NOT NULL REFERENCES networks (id),
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX security_groups_network_name ON security_groups (network_id, name);
CREATE INDEX security_groups_account ON security_groups (account_id, id);

CREATE TABLE security_group_rules (
    id               TEXT PRIMARY KEY,
    group_id         TEXT NOT NULL REFERENCES security_groups (id),
    direction        TEXT NOT NULL,
    protocol         TEXT NOT NULL,
    from_port        BIGINT,
    to_port          BIGINT,
    cidr             TEXT,
    peer_group_id    TEXT REFERENCES security_groups (id),
    created_at       BIGINT NOT NULL
);
CREATE INDEX security_group_rules_group ON security_group_rules (group_id);
CREATE INDEX security_group_rules_peer ON security_group_rules (peer_group_id);

CREATE TABLE instance_security_groups (
    instance_id  TEXT NOT NULL REFERENCES instances (id),
    group_id     TEXT NOT NULL REFERENCES security_groups (id),
    PRIMARY KEY (instance_id, group_id)
);
CREATE INDEX instance_security_groups_group ON instance_security_groups (group_id);

-- Bumped each time the network's firewall is computed, so that a host applies
-- the newest and ignores one that arrives late.
ALTER TABLE networks ADD COLUMN firewall_version BIGINT NOT NULL DEFAULT 0;
