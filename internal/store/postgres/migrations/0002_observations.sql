-- The newest observed version of each component instance of each server (newest by
-- observed_ns; the store keeps it current, see store.Observations).
CREATE TABLE observations (
    server_id   text   NOT NULL,
    instance    text   NOT NULL,
    component   text   NOT NULL,
    vendor      text   NOT NULL,
    model       text   NOT NULL,
    serial      text   NOT NULL,
    version     text   NOT NULL,
    source      text   NOT NULL,
    observed_ns bigint NOT NULL,
    task_id     text   NOT NULL,
    collect_id  text   NOT NULL,
    PRIMARY KEY (server_id, instance)
);

-- Every instance's recent observations, whichever won; trimmed to store.HistoryLimit per
-- instance. seq orders writes with the same observed_ns.
CREATE TABLE observation_history (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_id   text   NOT NULL,
    instance    text   NOT NULL,
    component   text   NOT NULL,
    vendor      text   NOT NULL,
    model       text   NOT NULL,
    serial      text   NOT NULL,
    version     text   NOT NULL,
    source      text   NOT NULL,
    observed_ns bigint NOT NULL,
    task_id     text   NOT NULL,
    collect_id  text   NOT NULL
);
CREATE INDEX observation_history_instance ON observation_history (server_id, instance, observed_ns, seq);
