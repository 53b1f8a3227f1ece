-- Region follows the mine (docs/security.md). Alerts keep a copy of their mine's region
-- (region_code) because every listing, summary and stream filters on it through the index
-- alert_region; the database keeps that copy equal to the mine's current region:
--   * a move (any UPDATE of mine.region_code: registry load, `slopewatch registry move`, SQL)
--     rewrites the copy of every alert of the mine in the same transaction, appends a
--     'moved' event to each open alert and an audit row to mine_move;
--   * an alert row takes its region from its mine when it is written, under a share lock on
--     the mine row, so an alert opened concurrently with a move either waits for the move
--     and sees the new region, or commits first and is rewritten by the move.

-- Audit of moves: which mine, from where to where, who (the application's actor, else the
-- database user) and when. Append-only, like the chain.
CREATE TABLE mine_move (
    id          bigserial PRIMARY KEY,
    mine_id     integer NOT NULL REFERENCES mine (id),
    mine_code   text NOT NULL,
    from_region text NOT NULL,
    to_region   text NOT NULL,
    actor       text NOT NULL,
    moved_at    timestamptz NOT NULL DEFAULT now(),
    -- open alerts that moved with the mine
    open_alerts integer NOT NULL
);
CREATE INDEX mine_move_mine ON mine_move (mine_id, id);
CREATE TRIGGER mine_move_append_only BEFORE UPDATE OR DELETE ON mine_move
    FOR EACH ROW EXECUTE FUNCTION refuse_rewrite();
CREATE TRIGGER mine_move_no_truncate BEFORE TRUNCATE ON mine_move
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_rewrite();

-- Who is acting: the application sets slopewatch.actor for its transaction
-- (set_config(..., true)); a change made by hand names the database user.
CREATE FUNCTION slopewatch_actor() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('slopewatch.actor', true), ''), 'database user ' || session_user)
$$;

CREATE FUNCTION mine_moved() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    who text := slopewatch_actor();
    moved integer;
BEGIN
    UPDATE alert SET region_code = NEW.region_code, modified_at = now() WHERE mine_id = NEW.id;
    INSERT INTO alert_event (alert_id, kind, level, at, actor, note, details)
    SELECT a.id, 'moved', a.level, now(), who,
           format('mine %s moved from region %s to %s', NEW.code, OLD.region_code, NEW.region_code),
           jsonb_build_object('from_region', OLD.region_code, 'to_region', NEW.region_code)
    FROM alert a WHERE a.mine_id = NEW.id AND a.state <> 'closed';
    GET DIAGNOSTICS moved = ROW_COUNT;
    INSERT INTO mine_move (mine_id, mine_code, from_region, to_region, actor, open_alerts)
    VALUES (NEW.id, NEW.code, OLD.region_code, NEW.region_code, who, moved);
    RETURN NULL;
END
$$;
CREATE TRIGGER mine_region_moved AFTER UPDATE OF region_code ON mine
    FOR EACH ROW WHEN (OLD.region_code IS DISTINCT FROM NEW.region_code) EXECUTE FUNCTION mine_moved();

-- FOR SHARE conflicts with the move's row lock on the mine (FOR KEY SHARE, which the foreign
-- key takes, would not): see the header for the two orders this makes safe.
CREATE FUNCTION alert_region_of_mine() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT m.region_code INTO STRICT NEW.region_code FROM mine m WHERE m.id = NEW.mine_id FOR SHARE;
    RETURN NEW;
END
$$;
CREATE TRIGGER alert_region_from_mine BEFORE INSERT OR UPDATE OF region_code, mine_id ON alert
    FOR EACH ROW EXECUTE FUNCTION alert_region_of_mine();

-- Any copy that drifted before this migration follows its mine now.
UPDATE alert a SET region_code = m.region_code FROM mine m WHERE m.id = a.mine_id AND a.region_code <> m.region_code;

-- Escalation follows the mine too: a step is taken once per alert, level, tier and region,
-- so after a move the new county (city, province) is told even if the old one was.
ALTER TABLE notify_step DROP CONSTRAINT notify_step_pkey;
CREATE UNIQUE INDEX notify_step_once ON notify_step (alert_id, level, tier, coalesce(region_code, ''));
