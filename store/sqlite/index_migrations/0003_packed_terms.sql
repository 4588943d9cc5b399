-- Term keys ("term=" and 24 hexadecimal digits, nearly every posting) are
-- stored as blobs of 13 bytes instead of 29 bytes of text (storedKey in
-- terms.go): the postings table takes about half the room. The Go step of
-- this migration (packPostings) copies the postings here, packing their
-- keys, and puts this table in the place of the old one.
CREATE TABLE postings_packed (
	key TEXT    NOT NULL, -- a key's text, or a term key packed as a blob
	seq INTEGER NOT NULL,
	PRIMARY KEY (key, seq)
) WITHOUT ROWID;

-- And the term lists of term_sources are rewritten, each as its changes to
-- the list before it of the same data key where that is shorter (the Go
-- step, repackTermSources, fills this table and puts it in the place of
-- the old one).
CREATE TABLE term_sources_packed (
	data_key BLOB    NOT NULL,
	seq      INTEGER NOT NULL,
	terms    BLOB    NOT NULL,
	PRIMARY KEY (data_key, seq)
) WITHOUT ROWID;
