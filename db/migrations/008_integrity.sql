-- Tamper evidence (docs/integrity.md): a hash chain per sensor over sealed blocks of its
-- readings, operator corrections as chained events, and the queue that drives the sealer.

-- One link of a sensor's chain. kind 'seal' covers a block of measurement time the first
-- time; 'supplement' re-covers the same block after late readings arrived; 'correction'
-- records an operator's correction event (its details in reading_correction).
-- A data entry covers exactly the block's rows with received_at <= received_to.
CREATE TABLE seal_entry (
    sensor_id   integer NOT NULL,
    seq         bigint NOT NULL CHECK (seq >= 1),
    kind        text NOT NULL CHECK (kind IN ('seal', 'supplement', 'correction')),
    block_start timestamptz,
    block_s     integer,
    received_to timestamptz,
    n_rows      integer NOT NULL CHECK (n_rows >= 0),
    digest      bytea NOT NULL CHECK (octet_length(digest) = 32),
    keys_digest bytea CHECK (octet_length(keys_digest) = 32),
    prev_hash   bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    entry_hash  bytea NOT NULL CHECK (octet_length(entry_hash) = 32),
    sealed_at   timestamptz NOT NULL,
    PRIMARY KEY (sensor_id, seq),
    CHECK ((kind = 'correction') = (block_start IS NULL)),
    CHECK ((kind = 'correction') OR (block_s IS NOT NULL AND received_to IS NOT NULL AND keys_digest IS NOT NULL))
);
CREATE INDEX seal_entry_block ON seal_entry (sensor_id, block_start, seq) WHERE block_start IS NOT NULL;

-- Corrections are new events, never rewrites: an operator marks readings invalid (or valid
-- again); the readings themselves stay as they were received.
CREATE TABLE reading_correction (
    id          bigserial PRIMARY KEY,
    sensor_id   integer NOT NULL,
    seq         bigint NOT NULL,
    channel     text,
    ts_from     timestamptz NOT NULL,
    ts_to       timestamptz NOT NULL,
    action      text NOT NULL CHECK (action IN ('invalidate', 'restore')),
    reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
    actor       text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    recorded_at timestamptz NOT NULL,
    CHECK (ts_from <= ts_to),
    UNIQUE (sensor_id, seq),
    FOREIGN KEY (sensor_id, seq) REFERENCES seal_entry (sensor_id, seq)
);
CREATE INDEX reading_correction_range ON reading_correction (sensor_id, ts_from);

-- Append-only: the chain and the corrections refuse UPDATE, DELETE and TRUNCATE. A superuser
-- can still drop the trigger; verification (and the heads held upstream) catch what follows.
CREATE FUNCTION refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER seal_entry_append_only BEFORE UPDATE OR DELETE ON seal_entry
    FOR EACH ROW EXECUTE FUNCTION refuse_rewrite();
CREATE TRIGGER seal_entry_no_truncate BEFORE TRUNCATE ON seal_entry
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_rewrite();
CREATE TRIGGER reading_correction_append_only BEFORE UPDATE OR DELETE ON reading_correction
    FOR EACH ROW EXECUTE FUNCTION refuse_rewrite();
CREATE TRIGGER reading_correction_no_truncate BEFORE TRUNCATE ON reading_correction
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_rewrite();

-- Measurement-time ranges with readings the sealer has not looked at. Ingest's dirty mark
-- (sensor_dirty, written in the same transaction as the readings) feeds it through a
-- trigger, so ingest itself needs no change and the analysis worker's clearing of
-- sensor_dirty does not lose anything. min_ts/max_ts: new marks; claimed_*: what a sealer
-- took and has not finished (kept across a crash).
CREATE TABLE seal_pending (
    sensor_id   integer PRIMARY KEY,
    min_ts      timestamptz,
    max_ts      timestamptz,
    claimed_min timestamptz,
    claimed_max timestamptz
);

CREATE FUNCTION seal_pending_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO seal_pending AS p (sensor_id, min_ts, max_ts) VALUES (NEW.sensor_id, NEW.min_ts, NEW.max_ts)
    ON CONFLICT (sensor_id) DO UPDATE
        SET min_ts = least(p.min_ts, EXCLUDED.min_ts), max_ts = greatest(p.max_ts, EXCLUDED.max_ts);
    RETURN NEW;
END
$$;
CREATE TRIGGER sensor_dirty_seal_pending AFTER INSERT OR UPDATE ON sensor_dirty
    FOR EACH ROW EXECUTE FUNCTION seal_pending_mark();

-- Readings stored before this migration: everything each sensor has, from its first reading.
INSERT INTO seal_pending (sensor_id, min_ts, max_ts)
SELECT l.sensor_id, min(f.ts), max(l.ts)
FROM sensor_latest l
CROSS JOIN LATERAL (SELECT r.ts FROM reading r WHERE r.sensor_id = l.sensor_id AND r.channel = l.channel
                    ORDER BY r.ts LIMIT 1) f
GROUP BY l.sensor_id;
