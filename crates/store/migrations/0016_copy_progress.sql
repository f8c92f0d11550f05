-- How far a snapshot's copy, or a volume's restore from a snapshot, has come,
-- in percent: written while the copy runs, read by the API (and the CLI's
-- --wait). NULL for volumes that were never restored.
ALTER TABLE snapshots ADD COLUMN progress BIGINT;
ALTER TABLE volumes ADD COLUMN progress BIGINT;
