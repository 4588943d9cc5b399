-- The tree size is the number of records: max(seq) + 1, read from the end
-- of the records table, which every append writes anyway. Keeping it in
-- log_head too cost every commit one more page. log_head keeps the
-- erasure counter, which only erasures change.
ALTER TABLE log_head DROP COLUMN size;
