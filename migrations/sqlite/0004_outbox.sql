-- The alert outbox: one ordered feed of everything the consumers of ewall are told, written in
-- the same transaction as the change that caused it, and the delivery state of each dispatcher.
--
-- One sequence for the whole service: `events.seq` is the position of an event in the feed,
-- and an alert's `seq` is the `seq` of its `alert.raised` event. `GET /alerts?after=` therefore
-- keeps its meaning (ascending, with gaps where other events sit) and `Last-Event-ID`, the
-- integration feed and the dispatchers' cursors are all positions in this one space.

-- AUTOINCREMENT: a seq is never reused, so every cursor over the feed only moves forward.
CREATE TABLE events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The event's id: the alert id for `alert.raised`, a new id otherwise. Consumers dedupe by it.
    id        TEXT NOT NULL UNIQUE,
    -- `alert.raised`, `alert.<state>`, `person.enrolled`, `person.released`, `order.started`,
    -- `order.ended`.
    kind      TEXT NOT NULL,
    person_id TEXT NOT NULL,
    alert_id  TEXT,
    -- When the change was recorded (microseconds since the epoch, UTC).
    time      INTEGER NOT NULL,
    -- The record as it was at that moment, JSON (the alert, or the person).
    data      TEXT NOT NULL
);

-- Alerts committed before this migration get their raised event now, at their own seq, so a
-- consumer paging the feed from 0 sees them too. `data` is filled in by the store right after
-- the migration (it is the alert's JSON, which SQL cannot write the way the service does).
INSERT INTO events (seq, id, kind, person_id, alert_id, time, data)
SELECT seq, id, 'alert.raised', person_id, id, raised_at, '' FROM alerts ORDER BY seq;
-- Finds those without a scan of the whole feed at every start.
CREATE INDEX events_unfilled ON events (seq) WHERE data = '';

-- Where each dispatcher stands: everything up to `seq` has been acknowledged by its consumer.
CREATE TABLE dispatch_cursors (
    consumer   TEXT PRIMARY KEY NOT NULL,
    seq        INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Webhook deliveries that failed every attempt (dead letters), and their redelivery.
CREATE TABLE webhook_deliveries (
    webhook         TEXT NOT NULL,
    event_seq       INTEGER NOT NULL,
    -- `dead` (given up), `pending` (an operator asked for a redelivery) or `delivered`.
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    last_error      TEXT NOT NULL,
    dead_at         INTEGER NOT NULL,
    delivered_at    INTEGER,
    PRIMARY KEY (webhook, event_seq)
);
CREATE INDEX webhook_deliveries_state ON webhook_deliveries (webhook, state, event_seq);
