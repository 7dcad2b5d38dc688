-- Tasks: the full task as JSON in body, plus the columns ListTasks filters on. seq is the
-- creation order (an identity column never reuses a value, which page tokens rely on).
CREATE TABLE tasks (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         text   NOT NULL UNIQUE,
    request_id text   UNIQUE, -- NULL for tasks created without one; NULLs never collide
    server_id  text   NOT NULL,
    method     text   NOT NULL,
    state      text   NOT NULL,
    requester  text   NOT NULL,
    priority   int    NOT NULL,
    revision   bigint NOT NULL,
    body       jsonb  NOT NULL
);
CREATE INDEX tasks_server_id ON tasks (server_id, seq);
CREATE INDEX tasks_state ON tasks (state, seq);
CREATE INDEX tasks_method ON tasks (method, seq);
CREATE INDEX tasks_requester ON tasks (requester, seq);

-- Every event of every task; never truncated.
CREATE TABLE task_events (
    task_id    text   NOT NULL REFERENCES tasks (id),
    revision   bigint NOT NULL,
    time_ns    bigint NOT NULL,
    kind       text   NOT NULL,
    from_state text   NOT NULL,
    to_state   text   NOT NULL,
    message    text   NOT NULL,
    PRIMARY KEY (task_id, revision)
);

-- The change log watchers on every replica read, in revision order: the task as it was after
-- each change, and its event. Compact drops old rows.
CREATE TABLE changes (
    revision bigint PRIMARY KEY,
    task_id  text   NOT NULL,
    task     jsonb  NOT NULL,
    event    jsonb  NOT NULL
);

-- One row: the store-wide revision counter. Every write transaction locks it first and holds it
-- until commit, so revisions become visible in the order they were assigned: a reader that sees
-- revision N sees every revision below it.
CREATE TABLE revision (
    id      int    PRIMARY KEY CHECK (id = 1),
    current bigint NOT NULL
);
INSERT INTO revision (id, current) VALUES (1, 0);

-- One row: the highest revision Compact has dropped. Apart from the counter so compacting does
-- not wait for, or hold up, writers.
CREATE TABLE compaction (
    id        int    PRIMARY KEY CHECK (id = 1),
    compacted bigint NOT NULL
);
INSERT INTO compaction (id, compacted) VALUES (1, 0);

-- The audit trail (internal/audit), in the same database as the tasks it describes.
CREATE TABLE audit_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time_ns   bigint NOT NULL,
    identity  text   NOT NULL,
    action    text   NOT NULL,
    server_id text   NOT NULL DEFAULT '',
    task_id   text   NOT NULL DEFAULT '',
    code      text   NOT NULL,
    message   text   NOT NULL DEFAULT '',
    peer      text   NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_time ON audit_events (time_ns);
CREATE INDEX audit_events_identity ON audit_events (identity, id);
CREATE INDEX audit_events_server ON audit_events (server_id, id);
CREATE INDEX audit_events_task ON audit_events (task_id, id);
