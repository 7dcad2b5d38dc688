-- Tasks name the rollout that created them (task.Task.RolloutID, in the JSON body). The column is
-- generated from the body, so the writer's statements stay as they are, and indexed, so ListTasks
-- filters by rollout without reading every body. CAST: a BLOB would be read as binary JSONB.
ALTER TABLE tasks ADD COLUMN rollout_id TEXT GENERATED ALWAYS AS (json_extract(CAST(body AS TEXT), '$.rollout_id')) VIRTUAL;
CREATE INDEX tasks_rollout_id ON tasks (rollout_id, seq);

-- A counter over all rollouts, stamped by every create and update: WatchRollouts resumes from it.
ALTER TABLE rollouts ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
CREATE INDEX rollouts_revision ON rollouts (revision);
