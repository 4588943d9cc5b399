-- Content encryption and crypto-shredding. A blob's key_id names the data
-- key it is sealed under; NULL marks a blob stored before encryption.
-- Adding a nullable column to the partitioned parent adds it to every
-- partition without rewriting any; partitions created later copy it (LIKE).
ALTER TABLE blobs ADD COLUMN key_id bytea;
-- No index on key_id: an encrypted blob's id starts with its key's id, so
-- an erasure deletes a range of each partition's primary key.

-- Data keys, wrapped by a key-encryption key kept outside the database.
-- Erasing a key sets wrapped and kek to NULL and erased_by to the sequence
-- number of the erasure record; the row stays, so verification can say
-- which record erased the content. scope uses the "C" collation so that
-- its ordering, and so a ScopePrefix range scan, compares bytes.
CREATE TABLE data_keys (
    id        bytea  PRIMARY KEY CHECK (length(id) = 16),
    tenant    text   NOT NULL,
    scope     text   COLLATE "C" NOT NULL,
    kind      text   NOT NULL,
    period    bigint NOT NULL, -- start of the UTC day, Unix seconds
    created   bigint NOT NULL, -- Unix nanoseconds
    kek       text,
    wrapped   bytea,
    erased_by bigint,
    CONSTRAINT data_keys_erased_check CHECK (erased_by IS NULL OR (wrapped IS NULL AND kek IS NULL))
);
-- Erasures find a scope's keys by tenant (and, for keys created while they
-- run, by id, which starts with the creation time). No index on scope: its
-- values are random, so an index on them costs a random page per new key.
CREATE INDEX data_keys_tenant ON data_keys (tenant, id);
-- Retention reads every live key in the background, without the write lock,
-- rather than keep an index on period up to date on the write path
-- (measured: +3% ingest without it).

-- Erasures committed so far; other writers sharing the database compare it
-- to drop data keys they hold in memory that were erased. A constant
-- default adds the column without rewriting the row.
ALTER TABLE log_head ADD COLUMN erasures bigint NOT NULL DEFAULT 0;

-- Legal holds. Released holds stay, as history. AddHold locks the log head
-- FOR SHARE while it inserts, so a hold waits for an erasure that holds the
-- log head and an erasure waits for a hold being added.
CREATE TABLE holds (
    id          uuid   PRIMARY KEY,
    tenant      text   NOT NULL,
    scope       text   COLLATE "C" NOT NULL,
    reason      text   NOT NULL,
    created_by  text   NOT NULL,
    created     bigint NOT NULL, -- Unix nanoseconds
    released_by text,
    released    bigint           -- Unix nanoseconds; NULL while active
);
CREATE INDEX holds_tenant ON holds (tenant, created);
