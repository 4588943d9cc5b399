-- What an erasure reads to find the postings derived from a data key's
-- content (store/internal/postings, erasable.go) replaces term_sources, a
-- list of terms per record and data key, which repeated the words of every
-- session's system prompt and tool schemas and took more room than the
-- postings themselves. An erasure now reads its keys' records in
-- key_records, the keys listed for their blocks in block_terms, clears the
-- records' bits from those keys' postings, and drops from each list the
-- keys left with no posting in the block.

-- The records whose content under each data key gave postings: a bitmap
-- per block of 64 records, as a key's postings are. term_sources has a row
-- per record and data key, so the OR of their bits in a block is the
-- block's bitmap.
CREATE TABLE key_records (
    data_key bytea  NOT NULL,
    block    bigint NOT NULL, -- seq >> 6
    bits     bigint NOT NULL, -- bit (seq & 63) for each record of the block whose content under data_key gave postings
    PRIMARY KEY (data_key, block)
);
INSERT INTO key_records (data_key, block, bits)
    SELECT data_key, seq >> 6, bit_or(1::bigint << (seq & 63)::int) FROM term_sources GROUP BY 1, 2;

-- The keys of the postings derived from content in each block of records,
-- stored keys in order, one after the other (postings.AppendList). A list
-- is some 10 KB of random bytes, which pglz cannot compress: stored
-- EXTERNAL, it is not tried (the same size, and inserts some 10% faster,
-- on 2,000 lists of 770 keys).
CREATE TABLE block_terms (
    block bigint PRIMARY KEY,
    keys  bytea  NOT NULL
);
ALTER TABLE block_terms ALTER COLUMN keys SET STORAGE EXTERNAL;

-- Each block's list is every term key it has postings of, packed or not:
-- search terms are the keys derived from content. (A term of a record
-- stored before content was encrypted, with no data key, is listed too,
-- but never cleared: only the records of an erased key are.)
-- postings.AppendList encodes a packed term key (13 bytes beginning with
-- 0x01) as its own bytes and any other as a zero byte, its length as an
-- unsigned varint (keys are at most 200 bytes: one or two bytes) and its
-- bytes; bytea orders bytewise, as Go compares the stored keys.
INSERT INTO block_terms (block, keys)
    SELECT block, string_agg(CASE WHEN key >= '\x01'::bytea AND key < '\x02'::bytea THEN key
        WHEN length(key) < 128 THEN '\x00'::bytea || set_byte('\x00'::bytea, 0, length(key)) || key
        ELSE '\x00'::bytea || set_byte(set_byte('\x0000'::bytea, 0, length(key) % 128 + 128), 1, length(key) / 128) || key END,
        ''::bytea ORDER BY key)
    FROM postings
    WHERE key >= '\x01'::bytea AND key < '\x02'::bytea AND length(key) = 13
        OR key >= convert_to('term=', 'UTF8') AND key < convert_to('term>', 'UTF8')
    GROUP BY block;

DROP TABLE term_sources;
