-- Least privilege (docs/security.md): one NOLOGIN group role per service, with only what the
-- service does. Deployments create LOGIN users in these roles (docs/deploy.md); migrations
-- and the admin commands (registry, token, notify, seal, db migrate) run as the owner.
--
-- Roles are cluster-wide, grants are per database: the roles are created only if missing
-- (another database of the cluster may have made them, even concurrently), the grants here
-- are made in every database.
--
-- The rule for every later migration (the owner runs them all):
--   * a new table or view is readable by analyze and api (default privileges below), and its
--     sequences usable by every service; nothing else is granted by default;
--   * a migration that creates a table a service writes GRANTs exactly those writes in the
--     same file (INSERT; UPDATE on the columns it changes; DELETE only for queues), and
--     REVOKEs SELECT where the table holds secrets the services do not need;
--   * no service role ever gets UPDATE, DELETE or TRUNCATE on readings or on history
--     (alert_event, seal_entry, reading_correction, chain_head_signature, mine_move);
--     tests/db/test_roles.py checks this for every table.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['slopewatch_ingest', 'slopewatch_analyze', 'slopewatch_api'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION
                WHEN duplicate_object OR unique_violation THEN
                    NULL;  -- created meanwhile by the migration of another database
                WHEN insufficient_privilege THEN
                    RAISE EXCEPTION 'role % does not exist and % may not create roles: have an administrator run '
                        'CREATE ROLE % NOLOGIN (docs/deploy.md), then migrate again', r, current_user, r;
            END;
        END IF;
    END LOOP;
END
$$;

-- Everyone reads the registry.
GRANT SELECT ON region, mine, site, sensor TO slopewatch_ingest, slopewatch_analyze, slopewatch_api;

-- Ingest: inserts readings (never updates or deletes them), keeps the newest values and the
-- dirty marks (whose trigger feeds seal_pending), and keeps what it rejects.
GRANT INSERT ON reading TO slopewatch_ingest;
-- ON CONFLICT reads the key columns. TimescaleDB copies a hypertable's grants onto its
-- compressed table, which has other columns and refuses a column grant: there ingest may
-- read the readings (still never change them).
DO $$
BEGIN
    IF to_regclass('_timescaledb_catalog.hypertable') IS NOT NULL THEN
        IF EXISTS (SELECT FROM _timescaledb_catalog.hypertable WHERE schema_name = 'public' AND table_name = 'reading')
        THEN
            GRANT SELECT ON reading TO slopewatch_ingest;
            RETURN;
        END IF;
    END IF;
    GRANT SELECT (sensor_id, channel, ts) ON reading TO slopewatch_ingest;
END
$$;
GRANT SELECT, INSERT, UPDATE ON sensor_latest, sensor_dirty, seal_pending TO slopewatch_ingest;
GRANT INSERT ON dead_letter TO slopewatch_ingest;
GRANT USAGE ON SEQUENCE dead_letter_id_seq TO slopewatch_ingest;

-- Analyze and the API read everything they need (secrets excepted), now and later.
GRANT SELECT ON ALL TABLES IN SCHEMA public TO slopewatch_analyze, slopewatch_api;
REVOKE SELECT ON notify_target FROM slopewatch_api;  -- webhook signing keys
REVOKE SELECT ON api_token FROM slopewatch_analyze;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO slopewatch_analyze, slopewatch_api;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO slopewatch_analyze, slopewatch_api;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO slopewatch_ingest, slopewatch_analyze, slopewatch_api;

-- Analyze: detectors and alerts, the dirty queue, the sealer (appends to the chain and signs
-- heads), the notifier (steps, outbox, attempts; it locks targets, which needs UPDATE on one
-- column: the harmless name).
GRANT INSERT, UPDATE ON alert TO slopewatch_analyze;
GRANT INSERT ON alert_event TO slopewatch_analyze;
GRANT INSERT, UPDATE ON rule_state TO slopewatch_analyze;
GRANT DELETE ON sensor_dirty TO slopewatch_analyze;
GRANT INSERT ON seal_entry, chain_head_signature TO slopewatch_analyze;
GRANT UPDATE ON seal_pending TO slopewatch_analyze;
GRANT INSERT ON notify_step TO slopewatch_analyze;
GRANT INSERT, UPDATE ON notify_outbox, notify_attempt TO slopewatch_analyze;
GRANT UPDATE (name) ON notify_target TO slopewatch_analyze;

-- The API: handling and supervision (only the handling columns of an alert, never its level
-- or evidence), corrections (chained events), token use, the online counts.
GRANT UPDATE (stage, state, closed_at, acknowledged_at, responsible_person, measures, funds, handling_deadline,
              contingency_plan, modified_at) ON alert TO slopewatch_api;
GRANT INSERT ON alert_event, alert_supervision TO slopewatch_api;
GRANT INSERT ON seal_entry, reading_correction TO slopewatch_api;
GRANT UPDATE (last_used_at) ON api_token TO slopewatch_api;
GRANT INSERT, UPDATE ON mine_status TO slopewatch_api;

-- An alert takes its region from its mine under a share lock (013); FOR SHARE needs UPDATE
-- on the mine, which no service has: the trigger runs as the owner instead.
ALTER FUNCTION alert_region_of_mine() SECURITY DEFINER SET search_path = pg_catalog, public;
