-- Images an account registers itself: uploaded, then completed; deleted ones stay
-- as rows (instances refer to them) without files.

ALTER TABLE images ADD COLUMN state TEXT NOT NULL DEFAULT 'available';
CREATE UNIQUE INDEX images_private_name ON images (account_id, name)
    WHERE visibility = 'private' AND state <> 'deleted';
