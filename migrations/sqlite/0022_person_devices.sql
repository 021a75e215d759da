-- One index leaf written per stored fix instead of two.
--
-- A batch holds fixes of many persons, so `positions_person_time` (person_id, time) and the
-- natural key (device_id, time, lat, lon) each took a leaf page of their own for nearly every
-- fix of a commit. A person's positions are now found through the devices that ever reported
-- for them (`person_devices`, written by the commit when a pair is new) and the natural key's
-- (device_id, time) prefix.
CREATE TABLE person_devices (
    person_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    PRIMARY KEY (person_id, device_id)
) WITHOUT ROWID;
INSERT INTO person_devices (person_id, device_id)
    SELECT DISTINCT person_id, device_id FROM positions;
DROP INDEX positions_person_time;
