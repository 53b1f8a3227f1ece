-- TimescaleDB: the readings table becomes a hypertable, compressed by sensor, with hourly
-- and daily continuous aggregates (real-time: they include data not yet materialised).
SELECT create_hypertable('reading', 'ts', chunk_time_interval => interval '7 days', migrate_data => true);
ALTER TABLE reading SET (timescaledb.compress, timescaledb.compress_segmentby = 'sensor_id, channel',
                         timescaledb.compress_orderby = 'ts');

CREATE MATERIALIZED VIEW reading_hourly WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT sensor_id, channel, time_bucket('1 hour', ts) AS bucket,
       min(value) AS min, max(value) AS max, avg(value) AS avg, count(*) AS n
FROM reading GROUP BY sensor_id, channel, bucket WITH NO DATA;

CREATE MATERIALIZED VIEW reading_daily WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT sensor_id, channel, time_bucket('1 day', ts) AS bucket,
       min(value) AS min, max(value) AS max, avg(value) AS avg, count(*) AS n
FROM reading GROUP BY sensor_id, channel, bucket WITH NO DATA;

SELECT add_continuous_aggregate_policy('reading_hourly', start_offset => interval '3 days',
                                       end_offset => interval '1 hour', schedule_interval => interval '30 minutes');
SELECT add_continuous_aggregate_policy('reading_daily', start_offset => interval '30 days',
                                       end_offset => interval '1 day', schedule_interval => interval '6 hours');
