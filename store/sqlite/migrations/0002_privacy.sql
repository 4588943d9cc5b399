-- Content encryption and crypto-shredding. A blob's key_id names the data
-- key it is sealed under; NULL marks a blob stored before encryption. No
-- index on it: an encrypted blob's id starts with its key's id, so an
-- erasure deletes a range of the id index.
ALTER TABLE blobs ADD COLUMN key_id BLOB;

-- Data keys, wrapped by a key-encryption key kept outside the database.
-- Erasing a key sets wrapped and kek to NULL and erased_by to the sequence
-- number of the erasure record; the row stays, so verification can say
-- which record erased the content.
CREATE TABLE data_keys (
	id        BLOB    PRIMARY KEY,
	tenant    TEXT    NOT NULL,
	scope     TEXT    NOT NULL,
	kind      TEXT    NOT NULL,
	period    INTEGER NOT NULL, -- start of the UTC day, Unix seconds
	created   INTEGER NOT NULL, -- Unix nanoseconds
	kek       TEXT,
	wrapped   BLOB,
	erased_by INTEGER
) WITHOUT ROWID;
-- Erasures find a scope's keys by tenant (and, for keys created while they
-- run, by id, which starts with the creation time). No index on scope: its
-- values are random, and an index on them dirtied a random page per new
-- key on the one write path (measured: -25% ingest with a session per record).
CREATE INDEX data_keys_tenant ON data_keys (tenant, id);
-- Retention reads every live key in the background, without the write lock,
-- rather than keep an index on period up to date on the write path
-- (measured: +3% ingest without it).

-- Erasures committed so far; other writers sharing the database compare it
-- to drop data keys they hold in memory that were erased.
ALTER TABLE log_head ADD COLUMN erasures INTEGER NOT NULL DEFAULT 0;

-- Legal holds. Released holds stay, as history.
CREATE TABLE holds (
	id          BLOB    PRIMARY KEY,
	tenant      TEXT    NOT NULL,
	scope       TEXT    NOT NULL,
	reason      TEXT    NOT NULL,
	created_by  TEXT    NOT NULL,
	created     INTEGER NOT NULL,
	released_by TEXT,
	released    INTEGER
) WITHOUT ROWID;
CREATE INDEX holds_tenant ON holds (tenant, created);
