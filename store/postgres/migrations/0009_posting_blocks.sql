-- A key's postings become one row per block of 64 consecutive records, a
-- bitmap of those that carry the key, instead of a row per record
-- (store/internal/postings, blocks.go): about twenty times fewer rows with
-- agent traffic, whose records repeat the words of the records before
-- them, and a row here costs about 60 bytes besides what it holds. The
-- bits are a bigint: bit (seq & 63) set for each record of the block that
-- carries the key (bit 63 is the sign).
CREATE TABLE postings_blocks (
    key   bytea  NOT NULL,
    block bigint NOT NULL, -- seq >> 6
    bits  bigint NOT NULL,
    PRIMARY KEY (key, block)
);
INSERT INTO postings_blocks (key, block, bits)
    SELECT key, seq >> 6, bit_or(1::bigint << (seq & 63)::int) FROM postings GROUP BY key, seq >> 6;
DROP TABLE postings;
ALTER TABLE postings_blocks RENAME TO postings;
ALTER INDEX postings_blocks_pkey RENAME TO postings_pkey;
