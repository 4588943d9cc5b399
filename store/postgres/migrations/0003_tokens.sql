-- API tokens. A token is never stored, only the SHA-256 hash of it, which
-- authentication looks up through the unique index on hash. roles holds
-- the role names sorted and comma-separated. Revoked tokens stay, as
-- history: revoked_by and revoked are both NULL until the token is
-- revoked. No index on created: listing every token, oldest first, sorts a
-- small table.
CREATE TABLE tokens (
    id         uuid             PRIMARY KEY,
    name       text             NOT NULL,
    tenant     text             NOT NULL, -- a tenant, or '*' for every tenant
    roles      text             NOT NULL,
    hash       bytea            NOT NULL UNIQUE CHECK (length(hash) = 32),
    rate_limit double precision NOT NULL, -- requests per second; 0: the server's default
    created_by text             NOT NULL,
    created    bigint           NOT NULL, -- Unix nanoseconds
    expires    bigint           NOT NULL, -- Unix nanoseconds; 0: never
    revoked_by text,
    revoked    bigint,                    -- Unix nanoseconds; NULL while valid
    CONSTRAINT tokens_revoked_check CHECK ((revoked_by IS NULL) = (revoked IS NULL))
);
