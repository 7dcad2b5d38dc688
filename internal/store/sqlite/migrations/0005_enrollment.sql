-- Agent enrollment (store.Enrollments): join tokens by the SHA-256 of their secret, the servers
-- that enrolled with each, the certificates issued to agents, and revoked agents. Times are
-- Unix nanoseconds; 0 is "never".
CREATE TABLE join_tokens (
    id         TEXT    PRIMARY KEY,
    sha256     BLOB    NOT NULL,
    server_id  TEXT    NOT NULL,
    max_uses   INTEGER NOT NULL,
    created_ns INTEGER NOT NULL,
    expires_ns INTEGER NOT NULL,
    revoked_ns INTEGER NOT NULL DEFAULT 0,
    note       TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE join_token_uses (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id  TEXT    NOT NULL REFERENCES join_tokens (id),
    server_id TEXT    NOT NULL,
    at_ns     INTEGER NOT NULL
);
CREATE INDEX join_token_uses_token ON join_token_uses (token_id, seq);

CREATE TABLE agent_certificates (
    serial      TEXT    PRIMARY KEY,
    server_id   TEXT    NOT NULL,
    token_id    TEXT    NOT NULL,
    issued_ns   INTEGER NOT NULL,
    not_after_ns INTEGER NOT NULL
);
CREATE INDEX agent_certificates_server ON agent_certificates (server_id, not_after_ns);

CREATE TABLE agent_revocations (
    server_id  TEXT    PRIMARY KEY,
    revoked_ns INTEGER NOT NULL
);
