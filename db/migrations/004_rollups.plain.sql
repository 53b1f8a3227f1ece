-- Plain PostgreSQL: hourly and daily statistics as views over the raw readings, with the
-- same columns as the TimescaleDB continuous aggregates so queries do not care which.
CREATE VIEW reading_hourly AS
SELECT sensor_id, channel, date_bin('1 hour', ts, timestamptz '2000-01-01') AS bucket,
       min(value) AS min, max(value) AS max, avg(value) AS avg, count(*) AS n
FROM reading GROUP BY sensor_id, channel, bucket;

CREATE VIEW reading_daily AS
SELECT sensor_id, channel, date_bin('1 day', ts, timestamptz '2000-01-01') AS bucket,
       min(value) AS min, max(value) AS max, avg(value) AS avg, count(*) AS n
FROM reading GROUP BY sensor_id, channel, bucket;
