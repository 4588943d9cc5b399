-- A zone map of the records' observed times: for each block of 4096
-- sequence numbers (seq >> 12), the least and the greatest time of its
-- records. The append transaction keeps it, one row per block a batch
-- touches (appends are serialised on the log head, so the rows are not
-- contended). A query's time bounds become sequence bounds through it: no
-- record with time < T has a sequence number past the last block whose
-- least time is < T, and none with time >= F comes before the first
-- block whose greatest time is >= F. Records arriving late (an old time
-- appended now) only widen their block, so the bounds stay exact. Leaves
-- are never deleted, so neither are blocks.
CREATE TABLE time_blocks (
    block    bigint PRIMARY KEY,
    min_time bigint NOT NULL,
    max_time bigint NOT NULL
);
INSERT INTO time_blocks (block, min_time, max_time)
    SELECT seq >> 12, min(observed), max(observed) FROM records GROUP BY seq >> 12;
