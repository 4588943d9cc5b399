-- Posting keys become bytea, and a term key ("term=" and 24 hexadecimal
-- digits, nearly every posting) is stored packed: the byte 0x01 and the
-- 12 bytes its digits spell (storedKey in index.go), 13 bytes instead of
-- 29. Other keys keep their bytes, which order as their text did under
-- the "C" collation. Each term_sources list holds its keys the same way.
CREATE OR REPLACE FUNCTION pg_temp.infertrail_stored_key(k text) RETURNS bytea
    IMMUTABLE LANGUAGE sql AS $$
    SELECT CASE WHEN k ~ '^term=[0-9a-f]{24}$' THEN '\x01'::bytea || decode(substr(k, 6), 'hex')
        ELSE convert_to(k, 'UTF8') END $$;
CREATE OR REPLACE FUNCTION pg_temp.infertrail_stored_keys(ks text[]) RETURNS bytea[]
    IMMUTABLE LANGUAGE sql AS $$
    SELECT coalesce(array_agg(pg_temp.infertrail_stored_key(k) ORDER BY n), '{}')
        FROM unnest(ks) WITH ORDINALITY AS t (k, n) $$;
ALTER TABLE postings ALTER COLUMN key TYPE bytea USING pg_temp.infertrail_stored_key(key);
ALTER TABLE term_sources ALTER COLUMN terms TYPE bytea[] USING pg_temp.infertrail_stored_keys(terms);
