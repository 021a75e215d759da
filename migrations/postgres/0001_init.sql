-- ewall schema, PostgreSQL. Times are timestamptz (microseconds, UTC), ids uuid, coordinates
-- and measures double precision. Positions and alerts carry no foreign keys: they are the
-- audit record and outlive the persons, devices and zones they name.

CREATE TABLE persons (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    level      text NOT NULL,
    timezone   text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE devices (
    imei       text PRIMARY KEY,
    person_id  uuid NOT NULL REFERENCES persons (id),
    created_at timestamptz NOT NULL
);
CREATE INDEX devices_person ON devices (person_id);

CREATE TABLE zones (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    kind       text NOT NULL,
    source_crs text NOT NULL,
    radius_m   double precision,
    -- GeoJSON text exactly as stored, so a zone reads back byte for byte.
    geometry   text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE person_zones (
    person_id uuid NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    zone_id   uuid NOT NULL REFERENCES zones (id),
    PRIMARY KEY (person_id, zone_id)
);
CREATE INDEX person_zones_zone ON person_zones (zone_id);

-- Positions: range-partitioned by fix time, one partition per UTC day (positions_YYYYMMDD),
-- created ahead by ewall_ensure_position_partitions. A year for 50,000 people is billions of
-- rows; a track query reads only the days it asks for, each day's indexes stay small enough
-- to be cached while it is written, and retention drops whole days. Fixes whose time has no
-- partition (a device clock years off) land in positions_default and are still queryable.
CREATE SEQUENCE positions_id_seq AS bigint;

CREATE TABLE positions (
    id                 bigint NOT NULL DEFAULT nextval('positions_id_seq'),
    device_id          text NOT NULL,
    person_id          uuid NOT NULL,
    time               timestamptz NOT NULL,
    received_at        timestamptz NOT NULL,
    lat                double precision NOT NULL,
    lon                double precision NOT NULL,
    valid              boolean NOT NULL,
    accuracy_m         double precision,
    speed_kmh          double precision,
    course             double precision,
    altitude_m         double precision,
    satellites         smallint,
    hdop               double precision,
    source             text NOT NULL,
    battery_pct        smallint,
    archived           boolean NOT NULL,
    integrity_mismatch boolean NOT NULL,
    protocol           text NOT NULL,
    -- The natural key of a fix: a device resending after a lost acknowledgement sends the same
    -- time and coordinates, and the second insert does nothing.
    CONSTRAINT positions_natural_key UNIQUE (device_id, time, lat, lon)
) PARTITION BY RANGE (time);
ALTER SEQUENCE positions_id_seq OWNED BY positions.id;

-- The track query: one person, a time range, in time order (id breaks ties).
CREATE INDEX positions_person_time ON positions (person_id, time, id);

CREATE TABLE positions_default PARTITION OF positions DEFAULT;

-- Creates the daily partitions for every day in [first_day, last_day] that has none, moving
-- any rows of that day out of positions_default first (PostgreSQL refuses a new partition
-- whose range the default partition still holds). Idempotent and safe to run from several
-- processes at once. Returns how many partitions it created.
CREATE FUNCTION ewall_ensure_position_partitions(first_day date, last_day date)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    day       date := first_day;
    part      text;
    day_start timestamptz;
    day_end   timestamptz;
    created   integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('ewall_position_partitions'));
    WHILE day <= last_day LOOP
        part := 'positions_' || to_char(day, 'YYYYMMDD');
        IF to_regclass(part) IS NULL THEN
            day_start := day::timestamp AT TIME ZONE 'UTC';
            day_end := (day + 1)::timestamp AT TIME ZONE 'UTC';
            EXECUTE format(
                'CREATE TABLE %I (LIKE positions INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
            EXECUTE format(
                'WITH moved AS (DELETE FROM positions_default WHERE time >= %L AND time < %L '
                'RETURNING *) INSERT INTO %I SELECT * FROM moved', day_start, day_end, part);
            EXECUTE format(
                'ALTER TABLE positions ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                part, day_start, day_end);
            created := created + 1;
        END IF;
        day := day + 1;
    END LOOP;
    RETURN created;
END
$$;

-- seq is assigned from feed_counters, not a sequence: see PgStore::commit. A sequence hands
-- out numbers in the order transactions ask, not the order they commit, and a consumer
-- paging by seq would skip a smaller seq that commits after a larger one it already read.
CREATE TABLE alerts (
    seq             bigint PRIMARY KEY,
    id              uuid NOT NULL UNIQUE,
    kind            text NOT NULL,
    person_id       uuid NOT NULL,
    device_id       text,
    zone_id         uuid,
    severity        text NOT NULL,
    time            timestamptz NOT NULL,
    raised_at       timestamptz NOT NULL,
    lat             double precision,
    lon             double precision,
    accuracy_m      double precision,
    state           text NOT NULL,
    late            boolean NOT NULL,
    note            text,
    acknowledged_at timestamptz,
    resolved_at     timestamptz
);
CREATE INDEX alerts_person_seq ON alerts (person_id, seq);

-- One row per cursor feed: the last number handed out. A transaction that writes to a feed
-- takes the next numbers with UPDATE ... RETURNING, which holds the row lock until it commits,
-- so the numbers become visible in commit order.
CREATE TABLE feed_counters (
    feed text PRIMARY KEY,
    last bigint NOT NULL
);
INSERT INTO feed_counters (feed, last) VALUES ('alerts', 0);

CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    role          text NOT NULL,
    label         text,
    secret_sha256 text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL
);
