-- From this version on, records are appended with their leaf compressed
-- and packed (tag 0x02 of the leaf column: store/internal/leafcol; plain
-- before) and their content references in version 4
-- (infertrail.MarshalContentRefs), which builds before it cannot read.
-- Rows written before stay as they are and readable. The version is there
-- so that a node of an earlier build refuses the schema as newer than it
-- knows, rather than fail on the first record it cannot decode: upgrade
-- every node.
COMMENT ON COLUMN records.leaf IS 'the canonical leaf: plain (starts with {), or a tag byte and its compressed form (store/internal/leafcol)';
