-- Corrections reach everything (docs/detection.md, "Operator corrections").

-- The ranges currently marked invalid: per sensor, channel (NULL: all channels) and range,
-- the newest correction decides (an invalidation not followed by a restore of the same
-- channel and range). The detectors' windows, the readings API and the charts read it.
CREATE VIEW invalid_range AS
SELECT sensor_id, channel, ts_from, ts_to, id, seq, reason, actor, recorded_at
FROM (
    SELECT DISTINCT ON (sensor_id, channel, ts_from, ts_to) sensor_id, channel, ts_from, ts_to, action, id, seq,
           reason, actor, recorded_at
    FROM reading_correction
    ORDER BY sensor_id, channel, ts_from, ts_to, seq DESC
) newest
WHERE action = 'invalidate';

-- Why a sensor is to be evaluated again when it is not new data: the corrections and
-- re-baselines recorded since the worker last looked (JSON objects), so the alert events
-- that follow name them.
ALTER TABLE sensor_dirty ADD COLUMN causes jsonb NOT NULL DEFAULT '[]'::jsonb;
