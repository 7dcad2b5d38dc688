-- Rollouts (store.Rollouts): the whole record as JSON in body (store.EncodeRollout), plus the
-- columns looked up by. seq is the creation order; version fences concurrent writers (replicas,
-- operators' calls); revision is a counter over all rollouts that WatchRollouts resumes from.
CREATE TABLE rollouts (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         text   NOT NULL UNIQUE,
    request_id text   UNIQUE, -- NULL for rollouts created without one
    state      text   NOT NULL,
    version    bigint NOT NULL,
    revision   bigint NOT NULL,
    body       jsonb  NOT NULL
);
CREATE INDEX rollouts_state ON rollouts (state, seq);
CREATE INDEX rollouts_revision ON rollouts (revision);

-- Tasks name the rollout that created them (task.Task.RolloutID, in the JSON body). Generated
-- from the body, so the writer's statements stay as they are; indexed for ListTasks.
ALTER TABLE tasks ADD COLUMN rollout_id text GENERATED ALWAYS AS (body->>'rollout_id') STORED;
CREATE INDEX tasks_rollout_id ON tasks (rollout_id, seq);
