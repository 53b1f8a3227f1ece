-- Per mine: how many sensors it has and how many reported within 3 × their expected
-- interval. Counting that over every sensor of a province costs a few hundred ms, too much
-- for dashboards that poll every few seconds, so the API refreshes this table every few
-- seconds (SLOPEWATCH_SUMMARY_REFRESH_S) and the summary reads it.
CREATE TABLE mine_status (
    mine_id      integer PRIMARY KEY REFERENCES mine (id),
    sensors      integer NOT NULL,
    online       integer NOT NULL,
    refreshed_at timestamptz NOT NULL
);
