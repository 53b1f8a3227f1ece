-- Notifications and escalation (docs/notifications.md): who is told, through which channel,
-- and the durable outbox that makes every notification go out exactly once per recipient.

-- A recipient bound to one mine or one node of the region tree. A region target hears the
-- escalations of its own level (a county target: the county step) for every mine below it.
CREATE TABLE notify_target (
    id          serial PRIMARY KEY,
    scope_kind  text NOT NULL CHECK (scope_kind IN ('region', 'mine')),
    scope_code  text NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('webhook', 'email', 'sms', 'log')),
    -- webhook URL, e-mail address, phone number; empty for the log channel
    address     text NOT NULL,
    -- the webhook signing key (HMAC needs the key itself, so it cannot be stored as a hash)
    secret      text,
    min_level   smallint NOT NULL DEFAULT 1 CHECK (min_level BETWEEN 1 AND 4),
    name        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    removed_at  timestamptz,
    CHECK ((channel = 'webhook') = (secret IS NOT NULL))
);
CREATE UNIQUE INDEX notify_target_live ON notify_target (scope_kind, scope_code, channel, address)
    WHERE removed_at IS NULL;

-- One row per alert, level and step of the ladder (mine, county, city, province) once it is
-- taken. The primary key lets exactly one notifier take a step, however many run.
CREATE TABLE notify_step (
    alert_id   bigint NOT NULL REFERENCES alert (id),
    level      smallint NOT NULL CHECK (level BETWEEN 1 AND 4),
    tier       text NOT NULL CHECK (tier IN ('mine', 'county', 'city', 'province')),
    region_code text,
    taken_at   timestamptz NOT NULL DEFAULT now(),
    targets    integer NOT NULL,
    PRIMARY KEY (alert_id, level, tier)
);

CREATE SEQUENCE notify_message_seq;

-- The outbox: one row per notification and recipient. The unique key is the de-duplication
-- rule (the same alert, level, step, recipient and reason goes out once). A notifier claims
-- due rows with FOR UPDATE SKIP LOCKED and a lease (claimed_until), sends outside the
-- transaction, and records the outcome; rows never disappear, they end sent, failed or
-- cancelled (target removed).
CREATE TABLE notify_outbox (
    id              bigserial PRIMARY KEY,
    alert_id        bigint REFERENCES alert (id),
    level           smallint NOT NULL CHECK (level BETWEEN 1 AND 4),
    tier            text NOT NULL CHECK (tier IN ('mine', 'county', 'city', 'province', 'test')),
    target_id       integer NOT NULL REFERENCES notify_target (id),
    reason          text NOT NULL CHECK (reason IN ('reached', 'unacknowledged', 'test')),
    -- red: never held back by the rate limit, sent on every channel at once
    urgent          boolean NOT NULL,
    payload         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- set when the rate limit moved next_attempt_at
    rate_limited    boolean NOT NULL DEFAULT false,
    claimed_by      text,
    claimed_until   timestamptz,
    message_id      bigint,
    digest          boolean NOT NULL DEFAULT false,
    last_error      text,
    sent_at         timestamptz
);
CREATE UNIQUE INDEX notify_outbox_once ON notify_outbox (alert_id, level, tier, target_id, reason);
CREATE INDEX notify_outbox_due ON notify_outbox (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX notify_outbox_alert ON notify_outbox (alert_id);
CREATE INDEX notify_outbox_target ON notify_outbox (target_id, id);

-- Every send attempt (one message: one notification, or a digest of several), for the
-- rate limit and for the delivery log.
CREATE TABLE notify_attempt (
    id            bigserial PRIMARY KEY,
    message_id    bigint NOT NULL,
    target_id     integer NOT NULL REFERENCES notify_target (id),
    notifications integer NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    ok            boolean,
    error         text
);
CREATE INDEX notify_attempt_target ON notify_attempt (target_id, started_at);
