-- Downlink commands and what the service knows of each device's kind.
-- devices.model: optional, set by operators; tells the protocol session how to read frames whose
-- meaning depends on the model. devices.protocol: the protocol the device last connected with,
-- learnt by ingest; commands are encoded for it.
ALTER TABLE devices ADD COLUMN model text;
ALTER TABLE devices ADD COLUMN protocol text;

-- One row per command an operator sent. status: pending (not yet written to the device),
-- sent (written; waiting for the device's answer), acknowledged, failed, expired. reference:
-- what the device's answer will carry (see the protocol crate's ReplyRef), set when sent.
-- No foreign key to devices: like positions and alerts, commands are part of the audit record.
-- seq orders one device's commands; it is not a feed cursor, so a sequence is enough.
CREATE TABLE commands (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           uuid NOT NULL UNIQUE,
    device_id    text NOT NULL,
    kind         text NOT NULL,
    text         text,
    interval_s   bigint,
    status       text NOT NULL,
    protocol     text,
    reference    text,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    sent_at      timestamptz,
    completed_at timestamptz,
    reply        text,
    error        text
);
CREATE INDEX commands_device_seq ON commands (device_id, seq);
CREATE INDEX commands_open_expiry ON commands (status, expires_at);
