-- Tasks: the full task as JSON in body, plus the columns ListTasks filters on. seq is the
-- creation order (AUTOINCREMENT so a sequence is never reused, which page tokens rely on).
CREATE TABLE tasks (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    request_id TEXT,
    server_id  TEXT    NOT NULL,
    method     TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    requester  TEXT    NOT NULL,
    priority   INTEGER NOT NULL,
    revision   INTEGER NOT NULL,
    body       TEXT    NOT NULL
);

-- NULL for tasks created without a request id, so only non-empty ids must be unique.
CREATE UNIQUE INDEX tasks_request_id ON tasks (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX tasks_server_id ON tasks (server_id, seq);
CREATE INDEX tasks_state ON tasks (state, seq);
CREATE INDEX tasks_method ON tasks (method, seq);
CREATE INDEX tasks_requester ON tasks (requester, seq);

-- Every event of every task; never truncated.
CREATE TABLE task_events (
    task_id    TEXT    NOT NULL REFERENCES tasks (id),
    revision   INTEGER NOT NULL,
    time_ns    INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    from_state TEXT    NOT NULL,
    to_state   TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    PRIMARY KEY (task_id, revision)
) WITHOUT ROWID;

-- The change log watchers resume from: the task as it was after each change, and its event.
-- Compact drops old rows.
CREATE TABLE changes (
    revision INTEGER PRIMARY KEY,
    task_id  TEXT NOT NULL,
    task     TEXT NOT NULL,
    event    TEXT NOT NULL
);

-- One row: the store-wide revision counter and the highest revision Compact has dropped.
CREATE TABLE revision (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    current   INTEGER NOT NULL,
    compacted INTEGER NOT NULL
);
INSERT INTO revision (id, current, compacted) VALUES (1, 0, 0);
