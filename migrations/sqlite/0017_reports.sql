-- Monthly reports: each person's supervision spans, officers' assessments, broadcasts.
--
-- person_levels: one row per stretch of a person's supervision at one level and time zone,
-- from enrolment (the person's creation) to release (deletion). A level or time zone change
-- closes the open row (until) and opens the next at the same instant; a deletion closes it with
-- released = 1. The row outlives the person, so a month's figures can be recomputed after a
-- release. Persons enrolled before this migration get one open row from their creation; persons
-- released before it are not known here (their release event stays in the feed).
CREATE TABLE person_levels (
    person_id TEXT NOT NULL,
    level     TEXT NOT NULL,
    timezone  TEXT NOT NULL,
    since     INTEGER NOT NULL,
    until     INTEGER,
    released  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX person_levels_person ON person_levels (person_id, since);
CREATE INDEX person_levels_since ON person_levels (since);
INSERT INTO person_levels (person_id, level, timezone, since)
    SELECT id, level, timezone, created_at FROM persons;

-- An officer's entry on a person's month: praise, reward, warning, revocation_proposal.
-- alert_ids: JSON array of the alerts cited. token_id and label: who recorded it, as the
-- handling chain records its actors. No foreign key: entries are part of the record.
CREATE TABLE assessments (
    id         TEXT PRIMARY KEY NOT NULL,
    person_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    month      TEXT NOT NULL,
    alert_ids  TEXT NOT NULL,
    token_id   TEXT,
    label      TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX assessments_person_month ON assessments (person_id, month, created_at);

-- A text sent as one message command per device of the persons addressed. target: the JSON of
-- the addressing ({"level": ...}, {"person_ids": [...]}, {"zone_id": ...}).
CREATE TABLE broadcasts (
    id         TEXT PRIMARY KEY NOT NULL,
    text       TEXT NOT NULL,
    target     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    token_id   TEXT,
    label      TEXT
);
CREATE INDEX broadcasts_created ON broadcasts (created_at);

CREATE TABLE broadcast_commands (
    broadcast_id TEXT NOT NULL,
    command_id   TEXT NOT NULL,
    PRIMARY KEY (broadcast_id, command_id)
);

-- Month windows over alerts and commands.
CREATE INDEX alerts_time ON alerts (time);
CREATE INDEX commands_device_created ON commands (device_id, created_at);
