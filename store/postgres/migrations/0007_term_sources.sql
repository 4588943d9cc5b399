-- The term postings of each record under each data key, so that an erasure
-- can delete them: one row per (data key, record), terms holding the keys
-- of its postings. It replaces postings.data_key and the index on it, an
-- entry per posting, as large as the postings and as costly to write.
CREATE TABLE term_sources (
    data_key bytea  NOT NULL,
    seq      bigint NOT NULL,
    terms    text[] NOT NULL,
    PRIMARY KEY (data_key, seq)
);
INSERT INTO term_sources (data_key, seq, terms)
    SELECT data_key, seq, array_agg(key ORDER BY key)
    FROM postings WHERE data_key IS NOT NULL
    GROUP BY data_key, seq;
DROP INDEX postings_data_key;
ALTER TABLE postings DROP COLUMN data_key;
