-- How many stored hashes one hash_chunks row packs. 64 hashes (2,048
-- bytes) left a 4 KiB page room for one row only, half of it unused; 63
-- (2,016 bytes) fit two rows to a page. A log that already has hashes
-- keeps 64, since its rows are laid out by it; a new one packs 63.
ALTER TABLE log_head ADD COLUMN chunk_size INTEGER NOT NULL DEFAULT 64;
UPDATE log_head SET chunk_size = 63 WHERE NOT EXISTS (SELECT 1 FROM hash_chunks);
