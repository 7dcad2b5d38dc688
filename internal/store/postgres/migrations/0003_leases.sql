-- One row per server that ever had a task run: which task may run on it, by which replica, with
-- which epoch, until when (by the database clock). A released lease keeps its row with an
-- expiry in the past, so epochs only grow.
CREATE TABLE server_leases (
    server_id  text        PRIMARY KEY,
    task_id    text        NOT NULL,
    method     text        NOT NULL,
    owner      text        NOT NULL,
    epoch      bigint      NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX server_leases_expires ON server_leases (expires_at);
