-- Readings in long form: one row per sensor, channel and measurement time. The primary
-- key makes a duplicate delivery harmless (INSERT ... ON CONFLICT DO NOTHING).
-- No foreign key to sensor: ingest checks the registry before it writes, and a foreign
-- key on a hypertable would cost every insert a lookup.
CREATE TABLE reading (
    sensor_id   integer NOT NULL,
    channel     text NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision NOT NULL,
    seq         bigint,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_id, channel, ts)
);

-- The newest reading per sensor and channel, kept by ingest in the same transaction.
CREATE TABLE sensor_latest (
    sensor_id   integer NOT NULL,
    channel     text NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_id, channel)
);

-- Sensors with new data that the analysis worker has not looked at yet. gen changes on
-- every write so the worker only clears what it has seen.
CREATE TABLE sensor_dirty (
    sensor_id integer PRIMARY KEY,
    min_ts    timestamptz NOT NULL,
    max_ts    timestamptz NOT NULL,
    gen       bigint NOT NULL DEFAULT 1
);

-- Messages and readings that ingest rejected, kept for inspection.
CREATE TABLE dead_letter (
    id                bigserial PRIMARY KEY,
    received_at       timestamptz NOT NULL DEFAULT now(),
    topic             text NOT NULL,
    payload           bytea NOT NULL,
    payload_bytes     integer NOT NULL,
    truncated         boolean NOT NULL,
    reason            text NOT NULL,
    detail            text NOT NULL,
    readings_rejected integer NOT NULL DEFAULT 0,
    readings_accepted integer NOT NULL DEFAULT 0
);
CREATE INDEX dead_letter_received ON dead_letter (received_at);
CREATE INDEX dead_letter_reason ON dead_letter (reason, received_at);
