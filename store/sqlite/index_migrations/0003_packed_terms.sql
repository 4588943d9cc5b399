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
