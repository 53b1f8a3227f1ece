-- Alerts that belong to no single sensor (docs/detection.md): the GB 39496 roll-up of a
-- facility, a mine whose monitoring has gone offline, and the watchdog over the analysis.
-- They use the same table, events, handling and notifications as point alerts.

-- A facility (a whole tailings pond: dam, pond and beach) may span several sites.
-- NULL: the site is a facility of its own.
ALTER TABLE site ADD COLUMN facility text;

-- What a sensorless alert is about: 'facility:<code>', 'mine' or 'analysis'.
ALTER TABLE alert ALTER COLUMN sensor_id DROP NOT NULL;
ALTER TABLE alert ADD COLUMN subject text;
ALTER TABLE alert ADD CONSTRAINT alert_sensor_or_subject CHECK ((sensor_id IS NULL) = (subject IS NOT NULL));
CREATE UNIQUE INDEX alert_one_open_subject ON alert (mine_id, subject, rule)
    WHERE state <> 'closed' AND sensor_id IS NULL;

-- The dwell of a sensorless alert (rule_state is per sensor).
CREATE TABLE subject_rule_state (
    mine_id       integer NOT NULL REFERENCES mine (id),
    subject       text NOT NULL,
    rule          text NOT NULL,
    pending_level smallint,
    pending_since timestamptz,
    PRIMARY KEY (mine_id, subject, rule)
);

-- The analysis' heartbeat, one row per analysis process: when it last finished a cycle
-- and the newest measurement time it has evaluated. The watchdog (in the API process)
-- compares them with the clock and with the newest reading stored.
CREATE TABLE analysis_heartbeat (
    worker        text PRIMARY KEY,
    started_at    timestamptz NOT NULL,
    beat_at       timestamptz NOT NULL,
    evaluated_to  timestamptz,
    cycles        bigint NOT NULL DEFAULT 0
);

-- When a sensor's oldest unevaluated data arrived (kept across later arrivals until the
-- analysis has evaluated it): the watchdog's wall-clock backlog.
ALTER TABLE sensor_dirty ADD COLUMN since timestamptz NOT NULL DEFAULT now();
