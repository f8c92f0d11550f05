-- One source for both engines. Lines between "-- @sqlite" (or "-- @postgres") and
-- "-- @end" run on that engine only.
-- Times are microseconds since the Unix epoch (UTC), in BIGINT columns on both engines.

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    email       TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    closed_at   BIGINT
);
CREATE UNIQUE INDEX accounts_active_email ON accounts (email) WHERE status = 'active';

CREATE TABLE access_keys (
    id             TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL REFERENCES accounts (id),
    scope          TEXT NOT NULL,
    status         TEXT NOT NULL,
    sealed_secret  TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX access_keys_account ON access_keys (account_id);

-- Limits an account set for itself; absent rows mean the region's default.
CREATE TABLE quotas (
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    resource    TEXT NOT NULL,
    max_value   BIGINT NOT NULL,
    PRIMARY KEY (account_id, resource)
);

-- What each account holds, kept in the same transactions as the resources,
-- so that a quota check is one conditional UPDATE and cannot race.
CREATE TABLE account_usage (
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    resource    TEXT NOT NULL,
    used        BIGINT NOT NULL,
    PRIMARY KEY (account_id, resource)
);

CREATE TABLE hosts (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    driver           TEXT NOT NULL,
    state            TEXT NOT NULL,
    vcpus            BIGINT NOT NULL,
    memory_mib       BIGINT NOT NULL,
    disk_gib         BIGINT NOT NULL,
    used_vcpus       BIGINT NOT NULL,
    used_memory_mib  BIGINT NOT NULL,
    used_disk_gib    BIGINT NOT NULL,
    instances        BIGINT NOT NULL,
    created_at       BIGINT NOT NULL
);

CREATE TABLE images (
    id           TEXT PRIMARY KEY,
    account_id   TEXT REFERENCES accounts (id),
    name         TEXT NOT NULL,
    visibility   TEXT NOT NULL,
    description  TEXT NOT NULL,
    spec         TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX images_public_name ON images (name) WHERE visibility = 'public';

CREATE TABLE instances (
    id                TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts (id),
    name              TEXT,
    image_id          TEXT NOT NULL REFERENCES images (id),
    instance_type     TEXT NOT NULL,
    vcpus             BIGINT NOT NULL,
    memory_mib        BIGINT NOT NULL,
    host_id           TEXT REFERENCES hosts (id),
    state             TEXT NOT NULL,
    desired_state     TEXT NOT NULL,
    state_reason      TEXT,
    user_data         TEXT,
    launch_id         TEXT NOT NULL,
    launched_at       BIGINT NOT NULL,
    state_changed_at  BIGINT NOT NULL,
    version           BIGINT NOT NULL
);
CREATE INDEX instances_account ON instances (account_id, id);
CREATE INDEX instances_state ON instances (state);
CREATE INDEX instances_host ON instances (host_id);
CREATE INDEX instances_launch ON instances (launch_id);

-- Idempotency tokens of launches: the same token and request return the same launch.
CREATE TABLE launch_tokens (
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    client_token  TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    launch_id     TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (account_id, client_token)
);

-- Every state change of every resource, written in the transaction that makes it.
-- Metering and billing are derived from this table, so it is append-only.
CREATE TABLE events (
    id             TEXT PRIMARY KEY,
    at             BIGINT NOT NULL,
    account_id     TEXT,
    resource_type  TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    action         TEXT NOT NULL,
    data           TEXT NOT NULL
);
CREATE INDEX events_account_at ON events (account_id, at);
CREATE INDEX events_resource_at ON events (resource_id, at);

-- @sqlite
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;
-- @end

-- @postgres
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only';
END;
$$;

CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
FOR EACH ROW EXECUTE FUNCTION events_append_only();

CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
-- @end
