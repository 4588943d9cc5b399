-- The investigation index: one row per (index key, record). It is derived
-- from the log by the indexer, off the append path, and can be rebuilt. A
-- query walks one key's postings newest first, (key, seq DESC) in the
-- primary key, and checks its other keys with primary-key lookups (both
-- index-only once autovacuum has set the visibility map). key uses the "C"
-- collation: keys are matched exactly, and comparing bytes is cheaper than
-- a locale's rules. data_key is the data key of the content a posting was
-- derived from (a search term), NULL for a posting derived from the leaf.
-- Postings are not partitioned: they are small, and a query finds a record
-- by sequence number, whatever its period.
CREATE TABLE postings (
    key      text   COLLATE "C" NOT NULL,
    seq      bigint NOT NULL,
    data_key bytea,
    PRIMARY KEY (key, seq)
);
-- An erasure deletes the postings of the keys it erases by data_key. Only
-- term postings have one, so a partial index keeps it to those.
CREATE INDEX postings_data_key ON postings (data_key) WHERE data_key IS NOT NULL;

-- Queries of tenants without index keys, with or without a time range,
-- count a tenant's entries in this index, and read a range of it rather
-- than walk the log when that is cheaper (see DB.Query), as SQLite's
-- records_tenant_time serves them. PostgreSQL's planner cannot choose
-- between the two alone: it takes a time range to be spread evenly over
-- the log, where it is one stretch of it, and walks the log to it (700 ms
-- for an hour in the middle of a million records). INCLUDE (seq, period,
-- kind) makes the counts and the reads index-only, kinds filters included
-- (the policy decisions of an hour on 10 million records: 20 ms, and 70 ms
-- when it read each row for its kind). On the partitioned parent the
-- index is created on every partition, and ATTACH PARTITION creates it on
-- each new one. Its entries grow with time within a tenant, so an append
-- dirties the last page of each of its tenants' ranges. BenchmarkAppend,
-- medians of four runs (which ranged over 20% either way): one tenant
-- 34,000 records/s with it, 32,000 without; 300 interleaved tenants 30,300
-- with it, 33,900 without.
CREATE INDEX records_tenant_observed ON records (tenant, observed) INCLUDE (seq, period, kind);

-- Named positions in the log of the processes that follow it (indexer,
-- detectors, SIEM streams): the sequence number of the next entry each
-- processes. They move by compare-and-set; a cursor never advanced has no
-- row.
CREATE TABLE cursors (
    name text   PRIMARY KEY,
    seq  bigint NOT NULL CHECK (seq > 0)
);

-- Detectors' findings. n, the paging cursor, is assigned in the order
-- findings commit (AddFindings locks the table against other writers), so
-- a page never skips one committed later. records holds the sequence
-- numbers of the records a finding is about, ascending. Findings are few
-- next to records, so these indexes cost little: each lets a listing of
-- one tenant, detector or subject (the index key a detector examined, such
-- as a trace) walk its findings newest first.
CREATE TABLE findings (
    n        bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id       uuid     NOT NULL UNIQUE,
    detector text     NOT NULL,
    severity text     NOT NULL,
    tenant   text     NOT NULL,
    subject  text     NOT NULL,
    records  bigint[] NOT NULL,
    summary  text     NOT NULL,
    time     bigint   NOT NULL -- Unix nanoseconds
);
CREATE INDEX findings_tenant ON findings (tenant, n);
CREATE INDEX findings_detector ON findings (detector, n);
CREATE INDEX findings_subject ON findings (subject, n);

-- The records each finding names, so that the findings about one record
-- are a range of the primary key.
CREATE TABLE finding_records (
    seq bigint NOT NULL,
    n   bigint NOT NULL,
    PRIMARY KEY (seq, n)
);
