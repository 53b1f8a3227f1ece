-- The services' writes on the tables that migrations 011, 016, 018, 019 and 020 added (015's rule:
-- a migration that adds a table a service writes grants exactly those writes; these three
-- were written beside 015, so their grants come here, after the roles exist).
--
-- 011 api_session: the API logs in, touches and revokes its own sessions and prunes the
--     dead ones (sessions are not history: a revoked session is kept until it expires).
GRANT SELECT, INSERT, UPDATE, DELETE ON api_session TO slopewatch_api;
-- 016 ingest_worker: each ingest worker upserts its own heartbeat (ON CONFLICT reads the row);
--     service_alert: the analysis opens and clears health.ingest_workers.
GRANT SELECT, INSERT, UPDATE ON ingest_worker TO slopewatch_ingest;
GRANT INSERT, UPDATE ON service_alert TO slopewatch_analyze;
-- 020 analysis_heartbeat: the analysis beats and forgets other workers' heartbeats older than
--     a day; subject_rule_state: the pending levels of facility, mine and watchdog alerts,
--     written by the analysis and by `slopewatch watchdog` (which runs with its role).
GRANT INSERT, UPDATE, DELETE ON analysis_heartbeat TO slopewatch_analyze;
GRANT INSERT, UPDATE ON subject_rule_state TO slopewatch_analyze;
-- 018 sensor_reference (append-only history): the analysis records first-reading references,
--     the API re-baselines (chained as a correction); neither may change or delete one.
GRANT INSERT ON sensor_reference TO slopewatch_analyze, slopewatch_api;
-- 019 a correction or re-baseline marks the sensor for evaluation in its own transaction
--     (the dirty mark's trigger also queues the sensor for the sealer, as ingest's does).
GRANT INSERT, UPDATE ON sensor_dirty, seal_pending TO slopewatch_api;
