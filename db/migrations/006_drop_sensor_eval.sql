-- sensor_eval was written on every evaluation and read by nothing once late data came to be
-- flagged by ingest (005); drop it rather than pay a write per evaluation.
DROP TABLE sensor_eval;
