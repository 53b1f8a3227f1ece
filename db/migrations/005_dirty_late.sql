-- Late data: set when a batch brings a reading older than the sensor's newest stored one,
-- so the analysis can mark the alert events it causes as retroactive.
ALTER TABLE sensor_dirty ADD COLUMN late boolean NOT NULL DEFAULT false;
