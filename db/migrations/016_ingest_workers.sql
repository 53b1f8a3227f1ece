-- Ingest workers say that they are connected and subscribed, every SLOPEWATCH_INGEST_HEARTBEAT_S.
-- Mosquitto does not tell who is in a shared group; the analysis worker compares the
-- number of workers heard from with SLOPEWATCH_INGEST_WORKERS_EXPECTED instead
-- (health.ingest_workers). A worker that stopped keeps its row: it is still a member of
-- the group on the broker (its persistent session queues its share) but no longer alive.
CREATE TABLE ingest_worker (
    client_id    text PRIMARY KEY,
    shared_group text NOT NULL,
    host         text NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL,
    seen_at      timestamptz NOT NULL,
    heartbeat_s  double precision NOT NULL
);

-- Health alerts about the service itself rather than a sensor (alert rows belong to a
-- sensor): at most one open row per rule, updated while the condition lasts and closed
-- (cleared_at) when it ends. Closed rows are the history.
CREATE TABLE service_alert (
    id             bigserial PRIMARY KEY,
    rule           text NOT NULL,
    opened_at      timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    cleared_at     timestamptz,
    evidence       jsonb NOT NULL,
    explanation_en text NOT NULL,
    explanation_zh text NOT NULL
);
CREATE UNIQUE INDEX service_alert_one_open ON service_alert (rule) WHERE cleared_at IS NULL;
