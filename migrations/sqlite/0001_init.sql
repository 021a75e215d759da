-- ewall schema, SQLite. Times are INTEGER microseconds since the Unix epoch (UTC); ids are
-- UUID text. Positions and alerts carry no foreign keys: they are the audit record and outlive
-- the persons, devices and zones they name.

CREATE TABLE persons (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    level      TEXT NOT NULL,
    timezone   TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE devices (
    imei       TEXT PRIMARY KEY NOT NULL,
    person_id  TEXT NOT NULL REFERENCES persons (id),
    created_at INTEGER NOT NULL
);
CREATE INDEX devices_person ON devices (person_id);

CREATE TABLE zones (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    source_crs TEXT NOT NULL,
    radius_m   REAL,
    geometry   TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE person_zones (
    person_id TEXT NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    zone_id   TEXT NOT NULL REFERENCES zones (id),
    PRIMARY KEY (person_id, zone_id)
);
CREATE INDEX person_zones_zone ON person_zones (zone_id);

CREATE TABLE positions (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id          TEXT NOT NULL,
    person_id          TEXT NOT NULL,
    time               INTEGER NOT NULL,
    received_at        INTEGER NOT NULL,
    lat                REAL NOT NULL,
    lon                REAL NOT NULL,
    valid              INTEGER NOT NULL,
    accuracy_m         REAL,
    speed_kmh          REAL,
    course             REAL,
    altitude_m         REAL,
    satellites         INTEGER,
    hdop               REAL,
    source             TEXT NOT NULL,
    battery_pct        INTEGER,
    archived           INTEGER NOT NULL,
    integrity_mismatch INTEGER NOT NULL,
    protocol           TEXT NOT NULL
);
CREATE INDEX positions_person_time ON positions (person_id, time);

-- AUTOINCREMENT: a seq is never reused, so the alert feed's cursor only moves forward.
CREATE TABLE alerts (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    person_id       TEXT NOT NULL,
    device_id       TEXT,
    zone_id         TEXT,
    severity        TEXT NOT NULL,
    time            INTEGER NOT NULL,
    raised_at       INTEGER NOT NULL,
    lat             REAL,
    lon             REAL,
    accuracy_m      REAL,
    state           TEXT NOT NULL,
    late            INTEGER NOT NULL,
    note            TEXT,
    acknowledged_at INTEGER,
    resolved_at     INTEGER
);
CREATE INDEX alerts_person_seq ON alerts (person_id, seq);

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    role          TEXT NOT NULL,
    label         TEXT,
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL
);
