-- Ports of instances published on their host's address, until the instance ends.

CREATE TABLE published_ports (
    instance_id  TEXT NOT NULL REFERENCES instances (id),
    port         BIGINT NOT NULL,
    address      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (instance_id, port)
);
