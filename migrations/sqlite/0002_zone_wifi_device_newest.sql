-- Wi-Fi access points inside a zone (properties.wifi): a JSON array of lower-case BSSIDs.
ALTER TABLE zones ADD COLUMN wifi TEXT NOT NULL DEFAULT '[]';
-- End of the enrolment period during which access points are learned (microseconds), or NULL.
ALTER TABLE zones ADD COLUMN wifi_learn_until INTEGER;

-- The newest fix time per device, read once at start so a backlog that arrives after a
-- restart is judged late (Store::newest_fix_times).
CREATE INDEX positions_device_time ON positions (device_id, time);
