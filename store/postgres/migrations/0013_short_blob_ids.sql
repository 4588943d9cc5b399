-- From this version on, records are appended with their content
-- references in version 5 (infertrail.MarshalContentRefs: blob ids of 12
-- bytes of keyed hash, not stored whole) and compressed blobs as zstd
-- frames without their magic number (codec 2), which builds before it
-- cannot read. Rows written before stay as they are and readable. The
-- version is there so that a node of an earlier build refuses the schema
-- as newer than it knows, rather than fail on the first record it cannot
-- decode: upgrade every node.
COMMENT ON COLUMN blobs.codec IS '0: plain, 1: a zstd frame, 2: a zstd frame without its magic number';
