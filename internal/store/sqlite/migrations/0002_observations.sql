-- The newest observed version of each component instance of each server (newest by
-- observed_ns; the store keeps it current, see store.Observations).
CREATE TABLE observations (
    server_id   TEXT    NOT NULL,
    instance    TEXT    NOT NULL,
    component   TEXT    NOT NULL,
    vendor      TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    serial      TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    observed_ns INTEGER NOT NULL,
    task_id     TEXT    NOT NULL,
    collect_id  TEXT    NOT NULL,
    PRIMARY KEY (server_id, instance)
) WITHOUT ROWID;

-- Every instance's recent observations, whichever won; trimmed to store.HistoryLimit per
-- instance. seq orders writes with the same observed_ns.
CREATE TABLE observation_history (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id   TEXT    NOT NULL,
    instance    TEXT    NOT NULL,
    component   TEXT    NOT NULL,
    vendor      TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    serial      TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    observed_ns INTEGER NOT NULL,
    task_id     TEXT    NOT NULL,
    collect_id  TEXT    NOT NULL
);
CREATE INDEX observation_history_instance ON observation_history (server_id, instance, observed_ns, seq);
