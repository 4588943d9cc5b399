-- The log head: one row holding the committed tree size and the period
-- (UTC month) of the latest append. Appends lock it FOR UPDATE.
CREATE TABLE log_head (
    id     boolean PRIMARY KEY DEFAULT true CHECK (id),
    size   bigint  NOT NULL CHECK (size >= 0),
    period integer NOT NULL
);
INSERT INTO log_head (id, size, period) VALUES (true, 0, 0);

-- The first sequence number appended in each period. Periods increase with
-- sequence numbers, so each period is one contiguous run of the log.
CREATE TABLE periods (
    period    integer PRIMARY KEY,
    first_seq bigint  NOT NULL
);

-- Records, range-partitioned by append period: one partition per UTC month.
CREATE TABLE records (
    period     integer NOT NULL,
    seq        bigint  NOT NULL,
    id         uuid    NOT NULL,
    mac        bytea   NOT NULL,
    tenant     text    NOT NULL,
    kind       text    NOT NULL,
    observed   bigint  NOT NULL,
    received   bigint  NOT NULL,
    session_id text    NOT NULL,
    trace_id   text    NOT NULL,
    actor_id   text    NOT NULL,
    leaf       bytea   NOT NULL,
    content    bytea,
    PRIMARY KEY (seq, period),
    -- Unique within a period; across periods, the append path looks ids up.
    CONSTRAINT records_id_period_key UNIQUE (id, period)
) PARTITION BY RANGE (period);

-- Content blobs, partitioned like records and deduplicated within a period,
-- so that a period's partition holds every blob its records reference.
CREATE TABLE blobs (
    period integer  NOT NULL,
    id     bytea    NOT NULL,
    codec  smallint NOT NULL,
    data   bytea    NOT NULL,
    PRIMARY KEY (id, period)
) PARTITION BY RANGE (period);
ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL;

-- Tree hashes: row chunk holds stored-hash indexes 64·chunk … 64·chunk+63,
-- 32 bytes each; the last row is partial and grows with later appends.
-- PLAIN storage keeps a full 2 KiB chunk inline, out of TOAST.
CREATE TABLE hashes (
    chunk bigint PRIMARY KEY,
    data  bytea  NOT NULL
);
ALTER TABLE hashes ALTER COLUMN data SET STORAGE PLAIN;

CREATE TABLE checkpoints (
    size bigint PRIMARY KEY,
    note bytea  NOT NULL
);
