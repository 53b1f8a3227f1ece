-- The reference position of displacement-like channels (docs/detection.md, "The reference
-- position"): what cumulative displacement is measured from. Events, never rewrites: the
-- effective reference of a channel is the newest re-baseline, else the registry's
-- baseline, else the first accepted readings. A first-reading reference that late data
-- (older readings) or a correction changes is a new row; the old one stays as evidence.
CREATE TABLE sensor_reference (
    id          bigserial PRIMARY KEY,
    sensor_id   integer NOT NULL REFERENCES sensor (id),
    channel     text NOT NULL,
    value       double precision NOT NULL CHECK (value = value AND abs(value) < 'infinity'),
    source      text NOT NULL CHECK (source IN ('registry', 'first_reading', 'rebaseline')),
    -- measurement time from which the reference holds: a re-baseline's time (readings before
    -- it belong to the earlier installation); the first reading's time; for the registry,
    -- when this value was first seen in the registry
    since       timestamptz NOT NULL,
    -- first_reading: the newest of the readings whose median is the reference, and how many
    basis_to    timestamptz,
    basis_n     integer,
    actor       text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    reason      text CHECK (length(reason) BETWEEN 1 AND 2000),
    -- a re-baseline is an event in the sensor's chain (a correction entry of that seq)
    seq         bigint,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((source = 'rebaseline') = (seq IS NOT NULL)),
    CHECK ((source = 'rebaseline') = (reason IS NOT NULL)),
    CHECK ((source = 'first_reading') = (basis_to IS NOT NULL AND basis_n IS NOT NULL)),
    FOREIGN KEY (sensor_id, seq) REFERENCES seal_entry (sensor_id, seq),
    UNIQUE (sensor_id, seq, channel)
);
CREATE INDEX sensor_reference_lookup ON sensor_reference (sensor_id, channel, source, id DESC);

CREATE TRIGGER sensor_reference_append_only BEFORE UPDATE OR DELETE ON sensor_reference
    FOR EACH ROW EXECUTE FUNCTION refuse_rewrite();
CREATE TRIGGER sensor_reference_no_truncate BEFORE TRUNCATE ON sensor_reference
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_rewrite();
