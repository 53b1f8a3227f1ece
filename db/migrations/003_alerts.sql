-- Alerts: one open alert per sensor and rule (partial unique index), updated, not duplicated.
-- Times opened_at/updated_at are measurement times; created_at/modified_at are wall clock.
CREATE TABLE alert (
    id                  bigserial PRIMARY KEY,
    sensor_id           integer NOT NULL REFERENCES sensor (id),
    site_id             integer NOT NULL REFERENCES site (id),
    mine_id             integer NOT NULL REFERENCES mine (id),
    region_code         text NOT NULL,
    rule                text NOT NULL,
    rule_version        integer NOT NULL,
    level               smallint NOT NULL CHECK (level BETWEEN 1 AND 4),
    peak_level          smallint NOT NULL CHECK (peak_level BETWEEN 1 AND 4),
    state               text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
    -- false once the condition has cleared; an orange or red alert then waits for a person.
    active              boolean NOT NULL DEFAULT true,
    opened_at           timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    closed_at           timestamptz,
    evidence            jsonb NOT NULL,
    explanation_en      text NOT NULL,
    explanation_zh      text NOT NULL,
    forecast_failure_at timestamptz,
    retroactive         boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    modified_at         timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX alert_one_open ON alert (sensor_id, rule) WHERE state <> 'closed';
CREATE INDEX alert_region ON alert (region_code text_pattern_ops, modified_at);
CREATE INDEX alert_modified ON alert (modified_at, id);

-- Append-only history of every change of an alert.
CREATE TABLE alert_event (
    id          bigserial PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES alert (id),
    kind        text NOT NULL,
    level       smallint NOT NULL,
    from_level  smallint,
    at          timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    retroactive boolean NOT NULL DEFAULT false,
    evidence    jsonb
);
CREATE INDEX alert_event_alert ON alert_event (alert_id, id);

-- Per sensor and rule: a lower level waiting out its dwell before the alert comes down.
CREATE TABLE rule_state (
    sensor_id     integer NOT NULL,
    rule          text NOT NULL,
    pending_level smallint,
    pending_since timestamptz,
    PRIMARY KEY (sensor_id, rule)
);

-- How far (in measurement time) the analysis has looked at each sensor.
CREATE TABLE sensor_eval (
    sensor_id    integer PRIMARY KEY,
    evaluated_to timestamptz NOT NULL,
    evaluated_at timestamptz NOT NULL DEFAULT now()
);
