-- The timer-driven supervision rules: when each device was last heard from, leave permits,
-- monitoring orders and check-ins.

-- The last message received from each device (any frame), for the offline deadline after a
-- restart. Written at most every few seconds per device, not on every heartbeat.
CREATE TABLE device_heard (
    device_id   text PRIMARY KEY,
    person_id   uuid NOT NULL,
    received_at timestamptz NOT NULL
);

-- Leave permits (请销假): the zones they name are suspended from `from_time` until
-- `to_time`, or until `ended_at` when the person reported back early.
CREATE TABLE leave_permits (
    id           uuid PRIMARY KEY,
    person_id    uuid NOT NULL,
    from_time    timestamptz NOT NULL,
    to_time      timestamptz NOT NULL,
    zone_ids     uuid[] NOT NULL,
    reason       text NOT NULL,
    approved_by  text NOT NULL,
    created_at   timestamptz NOT NULL,
    cancelled_at timestamptz,
    ended_at     timestamptz
);
CREATE INDEX leave_permits_person ON leave_permits (person_id, from_time);
CREATE INDEX leave_permits_to ON leave_permits (to_time);

-- Monitoring orders: the legal basis of electronic monitoring, at most 92 days each.
-- `started_at` and `ended_at` record when monitoring under the order actually began and
-- stopped (each with its event in the feed).
CREATE TABLE monitoring_orders (
    id          uuid PRIMARY KEY,
    person_id   uuid NOT NULL,
    ground      text NOT NULL,
    approved_by text NOT NULL,
    from_time   timestamptz NOT NULL,
    to_time     timestamptz NOT NULL,
    created_at  timestamptz NOT NULL,
    started_at  timestamptz,
    ended_at    timestamptz
);
CREATE INDEX monitoring_orders_person ON monitoring_orders (person_id, from_time);
CREATE INDEX monitoring_orders_open ON monitoring_orders (ended_at);

-- Check-ins from a kiosk, an app or an officer.
CREATE TABLE checkins (
    id          uuid PRIMARY KEY,
    person_id   uuid NOT NULL,
    time        timestamptz NOT NULL,
    method      text NOT NULL,
    lat         double precision,
    lon         double precision,
    accuracy_m  double precision,
    created_at  timestamptz NOT NULL
);
CREATE INDEX checkins_person_time ON checkins (person_id, time);
CREATE INDEX checkins_time ON checkins (time);
