-- API tokens. A token is never stored, only the SHA-256 hash of it, which
-- authentication looks up through the UNIQUE index on hash. roles holds the
-- role names sorted and comma-separated. Revoked tokens stay, as history:
-- revoked_by and revoked are both NULL until the token is revoked. No index
-- on created: listing every token, oldest first, sorts a small table.
CREATE TABLE tokens (
	id         BLOB    PRIMARY KEY,
	name       TEXT    NOT NULL,
	tenant     TEXT    NOT NULL, -- a tenant, or '*' for every tenant
	roles      TEXT    NOT NULL,
	hash       BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
	rate_limit REAL    NOT NULL, -- requests per second; 0: the server's default
	created_by TEXT    NOT NULL,
	created    INTEGER NOT NULL, -- Unix nanoseconds
	expires    INTEGER NOT NULL, -- Unix nanoseconds; 0: never
	revoked_by TEXT,
	revoked    INTEGER,          -- Unix nanoseconds; NULL while valid
	CHECK ((revoked_by IS NULL) = (revoked IS NULL))
) WITHOUT ROWID;
