-- Wi-Fi access points inside a zone (properties.wifi): lower-case BSSIDs.
ALTER TABLE zones ADD COLUMN wifi text[] NOT NULL DEFAULT '{}';
-- End of the enrolment period during which access points are learned, or NULL.
ALTER TABLE zones ADD COLUMN wifi_learn_until timestamptz;

-- The newest valid fix time per (device, person), kept by each commit, so the start-up read
-- (Store::newest_fix_times) is one small table, not a scan of a year of partitions.
CREATE TABLE device_newest (
    device_id text NOT NULL,
    person_id uuid NOT NULL,
    time      timestamptz NOT NULL,
    PRIMARY KEY (device_id, person_id)
);
INSERT INTO device_newest (device_id, person_id, time)
SELECT device_id, person_id, MAX(time) FROM positions WHERE valid GROUP BY device_id, person_id;
