-- The investigation index, the cursors of the processes that follow the
-- log, and the detectors' findings move to a database file of their own
-- (index_migrations), whose write lock is not the log's: a commit of the
-- index no longer holds up an append. Open copies these tables there
-- before this migration drops them.
DROP TABLE IF EXISTS postings;
DROP TABLE IF EXISTS cursors;
DROP TABLE IF EXISTS finding_records;
DROP TABLE IF EXISTS findings;

-- Which erasure erased a key: the value log_head.erasures took when it
-- did. The index file keeps the last one whose postings it deleted, and
-- deletes those of keys erased since (see DB.purge). Keys erased before
-- this migration had their postings deleted with them, and have none.
ALTER TABLE data_keys ADD COLUMN erasure INTEGER;
CREATE INDEX data_keys_erasure ON data_keys (erasure) WHERE erasure IS NOT NULL;
