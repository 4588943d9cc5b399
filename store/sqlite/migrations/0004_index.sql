-- The investigation index: one row per (index key, record). It is derived
-- from the log by the indexer, off the append path, and can be rebuilt. A
-- query walks one key's postings newest first, (key, seq DESC) in the
-- primary key, and checks its other keys with primary-key lookups, so the
-- table is keyed by them and has no rowid (a rowid table would need a
-- second index holding the same columns). data_key is the data key of the
-- content a posting was derived from (a search term), NULL for a posting
-- derived from the leaf.
CREATE TABLE postings (
	key      TEXT    NOT NULL,
	seq      INTEGER NOT NULL,
	data_key BLOB,
	PRIMARY KEY (key, seq)
) WITHOUT ROWID;
-- An erasure deletes the postings of the keys it erases by data_key. Only
-- term postings have one, so a partial index keeps it to those.
CREATE INDEX postings_data_key ON postings (data_key) WHERE data_key IS NOT NULL;

-- No index on records (tenant, seq): queries of a tenant without index keys
-- read its range of records_tenant_time, or walk the log, whichever the
-- counts say is cheaper (see DB.Query). With 300 tenants, whose records
-- interleave, such an index dirtied a page per tenant per batch and cost
-- 20-27% of ingest (BenchmarkAppend with 300 tenants: 14,900 records/s
-- without it, 10,900-12,000 with it).

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
