-- What an erasure reads to find the postings derived from a data key's
-- content (store/internal/postings, erasable.go) replaces term_sources,
-- a list of terms per record and data key, which repeated the words of
-- every session's system prompt and tool schemas and took more room than
-- the postings themselves.

-- The records whose content under each data key gave postings: a bitmap
-- per block of 64 records, as a key's postings are.
CREATE TABLE key_records (
	data_key BLOB    NOT NULL,
	block    INTEGER NOT NULL, -- seq >> 6
	bits     INTEGER NOT NULL, -- bit (seq & 63) set for each such record of the block
	PRIMARY KEY (data_key, block)
) WITHOUT ROWID;

-- The keys of the postings derived from content in each block of records,
-- stored keys in order (postings.AppendList). The Go step of this
-- migration (listTerms) fills it from the postings and drops term_sources.
CREATE TABLE block_terms (
	block INTEGER PRIMARY KEY,
	keys  BLOB    NOT NULL
);

-- term_sources has a row per record and data key, so the sum of their
-- bits in a block is their union.
INSERT INTO key_records (data_key, block, bits)
	SELECT data_key, seq >> 6, sum(1 << (seq & 63)) FROM term_sources GROUP BY data_key, seq >> 6 ORDER BY data_key, seq >> 6;
