-- Object storage: buckets, object versions, multipart uploads.
-- Object data lives in files (large objects, parts) or, for small objects, in the
-- row itself; either way a version is visible only once its row is committed.
-- Keys sort byte by byte, as S3 lists them.

CREATE TABLE buckets (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    region      TEXT NOT NULL,
    versioning  TEXT NOT NULL,
    acl         TEXT NOT NULL,
    policy      TEXT,
    cors        TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX buckets_account ON buckets (account_id, name);

-- @sqlite
CREATE TABLE objects (
    bucket_id      TEXT NOT NULL REFERENCES buckets (id),
    object_key     TEXT NOT NULL,
    version_id     TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    is_latest      BIGINT NOT NULL,
    delete_marker  BIGINT NOT NULL,
    size           BIGINT NOT NULL,
    etag           TEXT NOT NULL,
    segments       TEXT NOT NULL,
    inline_data    BLOB,
    content_type   TEXT,
    meta           TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (bucket_id, object_key, version_id)
);
CREATE TABLE multipart_uploads (
    id          TEXT PRIMARY KEY,
    bucket_id   TEXT NOT NULL REFERENCES buckets (id),
    object_key  TEXT NOT NULL,
    meta        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
-- @end

-- @postgres
CREATE TABLE objects (
    bucket_id      TEXT NOT NULL REFERENCES buckets (id),
    object_key     TEXT COLLATE "C" NOT NULL,
    version_id     TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    is_latest      BIGINT NOT NULL,
    delete_marker  BIGINT NOT NULL,
    size           BIGINT NOT NULL,
    etag           TEXT NOT NULL,
    segments       TEXT NOT NULL,
    inline_data    BYTEA,
    content_type   TEXT,
    meta           TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (bucket_id, object_key, version_id)
);
CREATE TABLE multipart_uploads (
    id          TEXT PRIMARY KEY,
    bucket_id   TEXT NOT NULL REFERENCES buckets (id),
    object_key  TEXT COLLATE "C" NOT NULL,
    meta        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
-- @end

CREATE INDEX objects_latest ON objects (bucket_id, is_latest, object_key);
CREATE INDEX multipart_uploads_bucket ON multipart_uploads (bucket_id, object_key, id);

CREATE TABLE multipart_parts (
    upload_id    TEXT NOT NULL REFERENCES multipart_uploads (id),
    part_number  BIGINT NOT NULL,
    size         BIGINT NOT NULL,
    etag         TEXT NOT NULL,
    blob_id      TEXT NOT NULL,
    checksums    TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);
