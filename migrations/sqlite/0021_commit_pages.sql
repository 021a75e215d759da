-- Fewer pages written per batch commit.
--
-- `positions_natural_key` (device_id, time, lat, lon) serves every lookup by device and time
-- that `positions_device_time` (device_id, time) did; the second index only cost a B-tree
-- insert per stored fix.
DROP INDEX positions_device_time;

-- The chain heads and last-heard times are written for every device of every batch, always by
-- their text key: keyed tables (WITHOUT ROWID) keep one B-tree each instead of a rowid table
-- plus the index of its primary key.
CREATE TABLE audit_heads_keyed (
    chain TEXT PRIMARY KEY NOT NULL,
    n     INTEGER NOT NULL,
    hash  BLOB NOT NULL
) WITHOUT ROWID;
INSERT INTO audit_heads_keyed (chain, n, hash) SELECT chain, n, hash FROM audit_heads;
DROP TABLE audit_heads;
ALTER TABLE audit_heads_keyed RENAME TO audit_heads;

CREATE TABLE device_heard_keyed (
    device_id   TEXT PRIMARY KEY NOT NULL,
    person_id   TEXT NOT NULL,
    -- Microseconds since the epoch, UTC (the server's clock).
    received_at INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO device_heard_keyed (device_id, person_id, received_at)
    SELECT device_id, person_id, received_at FROM device_heard;
DROP TABLE device_heard;
ALTER TABLE device_heard_keyed RENAME TO device_heard;
