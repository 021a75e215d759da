-- Downlink commands and what the service knows of each device's kind.
-- devices.model: optional, set by operators; tells the protocol session how to read frames whose
-- meaning depends on the model. devices.protocol: the protocol the device last connected with,
-- learnt by ingest; commands are encoded for it.
ALTER TABLE devices ADD COLUMN model TEXT;
ALTER TABLE devices ADD COLUMN protocol TEXT;

-- One row per command an operator sent. status: pending (not yet written to the device),
-- sent (written; waiting for the device's answer), acknowledged, failed, expired. reference:
-- what the device's answer will carry (see the protocol crate's ReplyRef), set when sent.
-- No foreign key to devices: like positions and alerts, commands are part of the audit record.
CREATE TABLE commands (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    device_id       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    text            TEXT,
    interval_s      INTEGER,
    status          TEXT NOT NULL,
    protocol        TEXT,
    reference       TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    completed_at    INTEGER,
    reply           TEXT,
    error           TEXT
);
CREATE INDEX commands_device_seq ON commands (device_id, seq);
CREATE INDEX commands_open_expiry ON commands (status, expires_at);
