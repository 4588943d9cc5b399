-- A term key is stored with the first 8 of the 12 bytes of its tag
-- (postings.Pack): 9 bytes instead of 13, in every posting and in every
-- block's list, about a sixth of the file with agent traffic. Cutting a
-- tag keeps the keys in order; two keys cut to the same bytes become one,
-- the union of their records.
CREATE TABLE postings_short (
	key   TEXT    NOT NULL, -- a key's text, or a term key packed as a blob (terms.go)
	block INTEGER NOT NULL, -- seq >> 6
	bits  INTEGER NOT NULL, -- bit (seq & 63) set for each record of the block that carries key
	PRIMARY KEY (key, block)
) WITHOUT ROWID;
INSERT INTO postings_short (key, block, bits)
	SELECT CASE WHEN typeof(key) = 'blob' AND length(key) = 13 THEN substr(key, 1, 9) ELSE key END, block, bits
	FROM postings WHERE true ORDER BY key, block
	ON CONFLICT (key, block) DO UPDATE SET bits = bits | excluded.bits;
DROP TABLE postings;
ALTER TABLE postings_short RENAME TO postings;

-- The Go step of this migration (shortTermLists) lists each block's term
-- keys again, as they are now stored.
DELETE FROM block_terms;
