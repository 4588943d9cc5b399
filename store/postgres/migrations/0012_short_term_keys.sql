-- A term key is stored with the first 8 of the 12 bytes of its tag
-- (postings.Pack): 9 bytes instead of 13, in every posting and in every
-- block's list. Cutting a tag keeps the keys in order; two keys cut to the
-- same bytes become one, the union of their records. Builds before this
-- one would look the new keys up in their old form: the version makes
-- them refuse the schema as newer than they know.
CREATE TABLE postings_short (
    key   bytea  NOT NULL,
    block bigint NOT NULL, -- seq >> 6
    bits  bigint NOT NULL,
    PRIMARY KEY (key, block)
);
INSERT INTO postings_short (key, block, bits)
    SELECT CASE WHEN key >= '\x01'::bytea AND key < '\x02'::bytea AND length(key) = 13 THEN substring(key FROM 1 FOR 9) ELSE key END,
        block, bit_or(bits)
    FROM postings GROUP BY 1, 2;
DROP TABLE postings;
ALTER TABLE postings_short RENAME TO postings;
ALTER INDEX postings_short_pkey RENAME TO postings_pkey;

-- Each block's list is again every term key it has postings of, as
-- migration 10 made them (postings.AppendList: a packed term key as its
-- own bytes, any other as a zero byte, its length as an unsigned varint
-- and its bytes).
TRUNCATE block_terms;
INSERT INTO block_terms (block, keys)
    SELECT block, string_agg(CASE WHEN key >= '\x01'::bytea AND key < '\x02'::bytea THEN key
        WHEN length(key) < 128 THEN '\x00'::bytea || set_byte('\x00'::bytea, 0, length(key)) || key
        ELSE '\x00'::bytea || set_byte(set_byte('\x0000'::bytea, 0, length(key) % 128 + 128), 1, length(key) / 128) || key END,
        ''::bytea ORDER BY key)
    FROM postings
    WHERE key >= '\x01'::bytea AND key < '\x02'::bytea
        OR key >= convert_to('term=', 'UTF8') AND key < convert_to('term>', 'UTF8')
    GROUP BY block;
