-- Whether an instance's metadata service demands IMDSv2 session tokens.

ALTER TABLE instances ADD COLUMN metadata_tokens_required BIGINT NOT NULL DEFAULT 0;
