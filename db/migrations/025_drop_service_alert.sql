-- health.ingest_workers is an alert of every mine now (subject 'ingest', through the alert
-- table, its events and notifications like watchdog.analysis): the service-level table
-- that held it alone, unseen by the API and the pages, goes (with 024's grant on it).
DROP TABLE service_alert;
