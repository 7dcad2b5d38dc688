-- Agent enrollment (store.Enrollments): join tokens by the SHA-256 of their secret, the servers
-- that enrolled with each, the certificates issued to agents, and revoked agents.
CREATE TABLE join_tokens (
    id         text        PRIMARY KEY,
    sha256     bytea       NOT NULL,
    server_id  text        NOT NULL,
    max_uses   integer     NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    note       text        NOT NULL DEFAULT ''
);

CREATE TABLE join_token_uses (
    seq       bigserial   PRIMARY KEY,
    token_id  text        NOT NULL REFERENCES join_tokens (id),
    server_id text        NOT NULL,
    at        timestamptz NOT NULL
);
CREATE INDEX join_token_uses_token ON join_token_uses (token_id, seq);

CREATE TABLE agent_certificates (
    serial    text        PRIMARY KEY,
    server_id text        NOT NULL,
    token_id  text        NOT NULL,
    issued_at timestamptz NOT NULL,
    not_after timestamptz NOT NULL
);
CREATE INDEX agent_certificates_server ON agent_certificates (server_id, not_after);

CREATE TABLE agent_revocations (
    server_id  text        PRIMARY KEY,
    revoked_at timestamptz NOT NULL
);
