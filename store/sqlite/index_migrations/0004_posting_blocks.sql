-- A key's postings become one row per block of 64 consecutive records, a
-- bitmap of those that carry the key, instead of a row per record
-- (store/internal/postings, blocks.go): about twenty times fewer rows with
-- agent traffic, whose records repeat the words of the records before them.
CREATE TABLE postings_blocks (
	key   TEXT    NOT NULL, -- a key's text, or a term key packed as a blob (terms.go)
	block INTEGER NOT NULL, -- seq >> 6
	bits  INTEGER NOT NULL, -- bit (seq & 63) set for each record of the block that carries key
	PRIMARY KEY (key, block)
) WITHOUT ROWID;

-- A key's sequence numbers are distinct (they were the primary key), so
-- the sum of their bits in a block is their union.
INSERT INTO postings_blocks (key, block, bits)
	SELECT key, seq >> 6, sum(1 << (seq & 63)) FROM postings GROUP BY key, seq >> 6 ORDER BY key, seq >> 6;
DROP TABLE postings;
ALTER TABLE postings_blocks RENAME TO postings;
