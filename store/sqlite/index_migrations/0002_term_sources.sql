-- The term postings of each record under each data key, so that an erasure
-- can delete them: one row per (data key, record), terms holding the keys
-- packed (see terms.go). It replaces postings.data_key and the index on it,
-- which the Go step of this migration (splitTermSources) moves here and
-- drops.
CREATE TABLE term_sources (
	data_key BLOB    NOT NULL,
	seq      INTEGER NOT NULL,
	terms    BLOB    NOT NULL,
	PRIMARY KEY (data_key, seq)
) WITHOUT ROWID;
