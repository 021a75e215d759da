-- The alarm-handling chain: open → acknowledged → verified → disposed (with a disposition) →
-- closed, every step recorded in alert_actions with who took it, when, and the note.

-- `resolved` was the end of the old two-step workflow; `closed` is the end of the chain.
ALTER TABLE alerts RENAME COLUMN resolved_at TO closed_at;
UPDATE alerts SET state = 'closed' WHERE state = 'resolved';
ALTER TABLE alerts ADD COLUMN verified_at INTEGER;
ALTER TABLE alerts ADD COLUMN disposed_at INTEGER;
-- false_alarm, warned, escalated or returned_by_itself, once disposed.
ALTER TABLE alerts ADD COLUMN disposition TEXT;
-- The alert still being handled when this one (same person, kind and zone) was raised; a
-- repeat is born closed.
ALTER TABLE alerts ADD COLUMN repeat_of TEXT;
-- Finds the alert of an episode still in the queue when a new one is raised.
CREATE INDEX alerts_unclosed ON alerts (person_id, kind, seq) WHERE state <> 'closed';
CREATE INDEX alerts_raised_at ON alerts (raised_at);

CREATE TABLE alert_actions (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id       TEXT NOT NULL,
    previous_state TEXT NOT NULL,
    state          TEXT NOT NULL,
    disposition    TEXT,
    -- The API token that took the step; NULL for the service itself (and for steps taken
    -- before tokens were recorded).
    token_id       TEXT,
    token_label    TEXT,
    note           TEXT,
    at             INTEGER NOT NULL,
    -- The `alert.<state>` event the step appended (the `alert.raised` of an alert born closed).
    event_seq      INTEGER
);
CREATE INDEX alert_actions_alert ON alert_actions (alert_id, seq);

-- Steps taken before the chain existed, from the times the alerts kept: who took them was not
-- recorded, and the one note kept goes on the last step.
INSERT INTO alert_actions (alert_id, previous_state, state, note, at)
SELECT id, 'open', 'acknowledged', CASE WHEN state = 'acknowledged' THEN note END,
       acknowledged_at
FROM alerts WHERE acknowledged_at IS NOT NULL ORDER BY seq;
INSERT INTO alert_actions (alert_id, previous_state, state, note, at)
SELECT id, 'acknowledged', 'closed', note, closed_at
FROM alerts WHERE state = 'closed' AND closed_at IS NOT NULL ORDER BY seq;
