-- Block volumes, their snapshots, and the content-addressed chunks snapshots
-- are made of.
--
-- A volume's file lives on one host (`host_id`). `state` is the volume's own
-- life (creating, available, in-use, resizing, deleting, deleted, error); an
-- attachment is `instance_id` with `attach_state` (attaching, attached,
-- detaching), so that a volume can never be attached to two instances.

CREATE TABLE volumes (
    id                     TEXT PRIMARY KEY,
    account_id             TEXT NOT NULL REFERENCES accounts (id),
    name                   TEXT,
    size_gib               BIGINT NOT NULL,
    host_id                TEXT,
    state                  TEXT NOT NULL,
    state_reason           TEXT,
    image_id               TEXT,
    snapshot_id            TEXT,
    instance_id            TEXT,
    attach_state           TEXT,
    slot                   BIGINT,
    is_root                BIGINT NOT NULL,
    delete_on_termination  BIGINT NOT NULL,
    force_detach           BIGINT NOT NULL,
    tags                   TEXT NOT NULL,
    created_at             BIGINT NOT NULL,
    state_changed_at       BIGINT NOT NULL,
    version                BIGINT NOT NULL
);
CREATE INDEX volumes_account ON volumes (account_id, id);
CREATE INDEX volumes_instance ON volumes (instance_id);
CREATE INDEX volumes_host ON volumes (host_id);

CREATE TABLE snapshots (
    id                TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts (id),
    volume_id         TEXT NOT NULL,
    volume_size_gib   BIGINT NOT NULL,
    description       TEXT NOT NULL,
    state             TEXT NOT NULL,
    state_reason      TEXT,
    chunk_size        BIGINT NOT NULL,
    stored_bytes      BIGINT NOT NULL,
    tags              TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    state_changed_at  BIGINT NOT NULL,
    version           BIGINT NOT NULL
);
CREATE INDEX snapshots_account ON snapshots (account_id, id);
CREATE INDEX snapshots_volume ON snapshots (volume_id);

-- The chunks of a completed snapshot, by position; positions that are all
-- zeros have no row.
CREATE TABLE snapshot_chunks (
    snapshot_id  TEXT NOT NULL REFERENCES snapshots (id),
    position     BIGINT NOT NULL,
    hash         TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, position)
);
CREATE INDEX snapshot_chunks_hash ON snapshot_chunks (hash);
