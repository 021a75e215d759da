-- The timer-driven supervision rules: when each device was last heard from, leave permits,
-- monitoring orders and check-ins.

-- The last message received from each device (any frame), for the offline deadline after a
-- restart. Written at most every few seconds per device, not on every heartbeat.
CREATE TABLE device_heard (
    device_id   TEXT PRIMARY KEY,
    person_id   TEXT NOT NULL,
    -- Microseconds since the epoch, UTC (the server's clock).
    received_at INTEGER NOT NULL
);

-- Leave permits (请销假): the zones they name are suspended from `from_time` until
-- `to_time`, or until `ended_at` when the person reported back early.
CREATE TABLE leave_permits (
    id           TEXT PRIMARY KEY,
    person_id    TEXT NOT NULL,
    from_time    INTEGER NOT NULL,
    to_time      INTEGER NOT NULL,
    -- JSON array of zone ids.
    zone_ids     TEXT NOT NULL,
    reason       TEXT NOT NULL,
    approved_by  TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    cancelled_at INTEGER,
    ended_at     INTEGER
);
CREATE INDEX leave_permits_person ON leave_permits (person_id, from_time);
CREATE INDEX leave_permits_to ON leave_permits (to_time);

-- Monitoring orders: the legal basis of electronic monitoring, at most 92 days each.
-- `started_at` and `ended_at` record when monitoring under the order actually began and
-- stopped (each with its event in the feed).
CREATE TABLE monitoring_orders (
    id          TEXT PRIMARY KEY,
    person_id   TEXT NOT NULL,
    ground      TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    from_time   INTEGER NOT NULL,
    to_time     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    ended_at    INTEGER
);
CREATE INDEX monitoring_orders_person ON monitoring_orders (person_id, from_time);
CREATE INDEX monitoring_orders_open ON monitoring_orders (ended_at);

-- Check-ins from a kiosk, an app or an officer.
CREATE TABLE checkins (
    id          TEXT PRIMARY KEY,
    person_id   TEXT NOT NULL,
    time        INTEGER NOT NULL,
    method      TEXT NOT NULL,
    lat         REAL,
    lon         REAL,
    accuracy_m  REAL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX checkins_person_time ON checkins (person_id, time);
CREATE INDEX checkins_time ON checkins (time);
