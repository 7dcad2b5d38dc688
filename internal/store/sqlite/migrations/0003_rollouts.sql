-- Rollouts: the whole record as JSON in body (store.EncodeRollout), plus the columns looked up
-- by. seq is the creation order; version fences concurrent writers (store.Rollouts).
CREATE TABLE rollouts (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    request_id TEXT,
    state      TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    body       TEXT    NOT NULL
);

CREATE UNIQUE INDEX rollouts_request_id ON rollouts (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX rollouts_state ON rollouts (state, seq);
