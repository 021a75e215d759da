-- Idempotent resends: a device that lost an acknowledgement sends the same fix again. A fix is
-- identified by its device, fix time and coordinates; the store skips a second copy instead of
-- keeping it twice. Copies already stored twice (before this key existed) keep their first row.
DELETE FROM positions
WHERE id NOT IN (SELECT MIN(id) FROM positions GROUP BY device_id, time, lat, lon);

CREATE UNIQUE INDEX positions_natural_key ON positions (device_id, time, lat, lon);
