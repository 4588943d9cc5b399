-- The index file of an InferTrail database: data derived from the log,
-- written off the append path under a write lock of its own. Lost, it is
-- rebuilt from the log (the cursors start again from 0).

-- The investigation index: one row per (index key, record). A query walks
-- one key's postings newest first, (key, seq DESC) in the primary key, and
-- checks its other keys with primary-key lookups, so the table is keyed by
-- them and has no rowid (a rowid table would need a second index holding
-- the same columns). data_key is the data key of the content a posting was
-- derived from (a search term), NULL for a posting derived from the leaf.
CREATE TABLE postings (
	key      TEXT    NOT NULL,
	seq      INTEGER NOT NULL,
	data_key BLOB,
	PRIMARY KEY (key, seq)
) WITHOUT ROWID;
-- An erasure deletes the postings of the keys it erases by data_key. Only
-- term postings have one, so a partial index keeps it to those.
CREATE INDEX postings_data_key ON postings (data_key) WHERE data_key IS NOT NULL;

-- Named positions in the log of the processes that follow it (indexer,
-- detectors, SIEM streams): the sequence number of the next entry each
-- processes. They move by compare-and-set.
CREATE TABLE cursors (
	name TEXT    PRIMARY KEY,
	seq  INTEGER NOT NULL
) WITHOUT ROWID;

-- Detectors' findings. n, the paging cursor, never decreases and is never
-- reused (AUTOINCREMENT), so pages stay stable. records holds the
-- sequence numbers of the records a finding is about as a JSON array,
-- ascending. Findings are few next to records, so these indexes cost little:
-- each lets a listing of one tenant, detector or subject (the index key a
-- detector examined, such as a trace) walk its findings newest first
-- (n is the rowid, the last column of each index).
CREATE TABLE findings (
	n        INTEGER PRIMARY KEY AUTOINCREMENT,
	id       BLOB    NOT NULL UNIQUE,
	detector TEXT    NOT NULL,
	severity TEXT    NOT NULL,
	tenant   TEXT    NOT NULL,
	subject  TEXT    NOT NULL,
	records  TEXT    NOT NULL,
	summary  TEXT    NOT NULL,
	time     INTEGER NOT NULL -- Unix nanoseconds
);
CREATE INDEX findings_tenant ON findings (tenant);
CREATE INDEX findings_detector ON findings (detector);
CREATE INDEX findings_subject ON findings (subject);

-- The records each finding names, so that the findings about one record
-- are a range of the primary key.
CREATE TABLE finding_records (
	seq INTEGER NOT NULL,
	n   INTEGER NOT NULL,
	PRIMARY KEY (seq, n)
) WITHOUT ROWID;

-- purged is the last erasure (log_head.erasures of the log) whose keys'
-- postings this file has deleted.
CREATE TABLE index_head (
	one    INTEGER PRIMARY KEY CHECK (one = 1),
	purged INTEGER NOT NULL
);
INSERT INTO index_head (one, purged) VALUES (1, 0);
