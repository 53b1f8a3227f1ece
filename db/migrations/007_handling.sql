-- Access and closed-loop handling (闭环): API tokens bound to a node of the region tree,
-- the handling stage of every alert, the five fixed (五落实), supervision (督办).

-- A token is shown once at creation; only its SHA-256 is stored. Tokens are 256-bit
-- random strings, so a fast hash is enough (no password stretching needed).
CREATE TABLE api_token (
    id           serial PRIMARY KEY,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role         text NOT NULL CHECK (role IN ('viewer', 'operator', 'supervisor', 'admin')),
    -- 'all' (a national or test instance), 'region' (a GB/T 2260 province, city or county) or 'mine'.
    scope_kind   text NOT NULL CHECK (scope_kind IN ('all', 'region', 'mine')),
    scope_code   text NOT NULL,
    token_hash   bytea NOT NULL UNIQUE,
    token_prefix text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- Handling stage: open → acknowledged → handling → resolved → verified → closed.
-- state (open|closed) stays as the condition's record: closed exactly when stage is closed.
ALTER TABLE alert ADD COLUMN stage text NOT NULL DEFAULT 'open'
    CHECK (stage IN ('open', 'acknowledged', 'handling', 'resolved', 'verified', 'closed'));
UPDATE alert SET stage = 'closed' WHERE state = 'closed';
ALTER TABLE alert ADD CONSTRAINT alert_stage_state CHECK ((stage = 'closed') = (state = 'closed'));
ALTER TABLE alert ADD COLUMN acknowledged_at timestamptz;
-- The five fixed: responsible person, measures, funds, deadline, contingency plan.
ALTER TABLE alert ADD COLUMN responsible_person text;
ALTER TABLE alert ADD COLUMN measures text;
ALTER TABLE alert ADD COLUMN funds text;
ALTER TABLE alert ADD COLUMN handling_deadline timestamptz;
ALTER TABLE alert ADD COLUMN contingency_plan text;
CREATE INDEX alert_open_stage ON alert (stage, level) WHERE state <> 'closed';

-- Who did what: NULL actor means the analysis (the machine); a person acts through a token.
ALTER TABLE alert_event ADD COLUMN actor text;
ALTER TABLE alert_event ADD COLUMN actor_token_id integer;
ALTER TABLE alert_event ADD COLUMN note text;
ALTER TABLE alert_event ADD COLUMN details jsonb;
-- The writing transaction's id: the change feed orders by (xid, id) and shows only rows
-- whose transaction is older than every transaction still running, so a poller never
-- skips an event that commits late with a lower id.
ALTER TABLE alert_event ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX alert_event_feed ON alert_event (xid, id);

-- Supervision (督办): a higher level flags an alert of its subtree with a deadline.
CREATE TABLE alert_supervision (
    id             bigserial PRIMARY KEY,
    alert_id       bigint NOT NULL REFERENCES alert (id),
    region_code    text NOT NULL REFERENCES region (code),
    actor          text NOT NULL,
    actor_token_id integer,
    deadline       timestamptz NOT NULL,
    note           text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_supervision_alert ON alert_supervision (alert_id);
CREATE INDEX alert_supervision_deadline ON alert_supervision (deadline);
