-- The alert outbox: one ordered feed of everything the consumers of ewall are told, written in
-- the same transaction as the change that caused it, and the delivery state of each dispatcher.
--
-- One numbering for the whole service: `events.seq` is the position of an event in the feed,
-- and an alert's `seq` is the `seq` of its `alert.raised` event. Both come from the one counter
-- row `feed_counters('events')` (formerly 'alerts'), taken inside the writing transaction and
-- held until it commits, so seq order is commit order.
UPDATE feed_counters SET feed = 'events' WHERE feed = 'alerts';

CREATE TABLE events (
    seq       bigint PRIMARY KEY,
    -- The event's id: the alert id for `alert.raised`, a new id otherwise. Consumers dedupe by it.
    id        uuid NOT NULL UNIQUE,
    -- `alert.raised`, `alert.<state>`, `person.enrolled`, `person.released`, `order.started`,
    -- `order.ended`.
    kind      text NOT NULL,
    person_id uuid NOT NULL,
    alert_id  uuid,
    -- When the change was recorded.
    time      timestamptz NOT NULL,
    -- The record as it was at that moment, JSON text exactly as the service wrote it (the
    -- alert, or the person).
    data      text NOT NULL
);

-- Alerts committed before this migration get their raised event now, at their own seq, so a
-- consumer paging the feed from 0 sees them too. `data` is filled in by the store right after
-- the migration (it is the alert's JSON, which SQL cannot write the way the service does).
INSERT INTO events (seq, id, kind, person_id, alert_id, time, data)
SELECT seq, id, 'alert.raised', person_id, id, raised_at, '' FROM alerts ORDER BY seq;
CREATE INDEX events_unfilled ON events (seq) WHERE data = '';

-- Where each dispatcher stands: everything up to `seq` has been acknowledged by its consumer.
CREATE TABLE dispatch_cursors (
    consumer   text PRIMARY KEY,
    seq        bigint NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Webhook deliveries that failed every attempt (dead letters), and their redelivery.
CREATE TABLE webhook_deliveries (
    webhook      text NOT NULL,
    event_seq    bigint NOT NULL,
    -- `dead` (given up), `pending` (an operator asked for a redelivery) or `delivered`.
    state        text NOT NULL,
    attempts     bigint NOT NULL,
    last_error   text NOT NULL,
    dead_at      timestamptz NOT NULL,
    delivered_at timestamptz,
    PRIMARY KEY (webhook, event_seq)
);
CREATE INDEX webhook_deliveries_state ON webhook_deliveries (webhook, state, event_seq);
